//! The bytes of a migration channel, as a peer could send them: messages
//! read one after another until the stream ends or one is refused, and the
//! same bytes through the line framing of the RPC.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let mut r = tokio::io::BufReader::new(data);
        while agent::migration::wire::recv(&mut r).await.is_ok() {}
        let mut lines = hpc::framing::LineReader::new(tokio::io::BufReader::new(data), 64);
        while let Ok(f) = lines.next_frame().await {
            if f == hpc::framing::Frame::Eof {
                break;
            }
        }
    });
});
