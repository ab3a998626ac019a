//! One line of the agent's JSON-RPC, as a client could send it: the envelope
//! check, then the params of every method decoded into their typed form.
#![no_main]

use hpc::protocol::{
    MigrateParams, NodeParams, PathParams, PidParams, ProcFieldParams, ProcListParams,
    ProcWriteParams, ReniceParams, SignalParams, SpawnParams, SubscribeParams, WriteParams,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(req)) = agent::connection::parse_request(data) else {
        return;
    };
    let p = req.params;
    let m = req.method.as_str();
    let _ = agent::rpc::params::<PathParams>(m, p.clone());
    let _ = agent::rpc::params::<WriteParams>(m, p.clone());
    let _ = agent::rpc::params::<ProcListParams>(m, p.clone());
    let _ = agent::rpc::params::<PidParams>(m, p.clone());
    let _ = agent::rpc::params::<ProcFieldParams>(m, p.clone());
    let _ = agent::rpc::params::<ProcWriteParams>(m, p.clone());
    let _ = agent::rpc::params::<SignalParams>(m, p.clone());
    let _ = agent::rpc::params::<ReniceParams>(m, p.clone());
    let _ = agent::rpc::params::<SubscribeParams>(m, p.clone());
    let _ = agent::rpc::params::<SpawnParams>(m, p.clone());
    let _ = agent::rpc::params::<MigrateParams>(m, p.clone());
    let _ = agent::rpc::params::<NodeParams>(m, p);
});
