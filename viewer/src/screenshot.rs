//! `--screenshot FILE`: once the first complete frame is on screen (every
//! node listed with its figures, or the reason it cannot be), the app writes
//! what the window shows to a PNG file and quits.

use std::path::Path;

use crate::net::LinkState;
use crate::state::{ClusterLink, ClusterState};

/// Whether the state is complete enough to be worth a picture: the cluster
/// answered and every up node's link is settled (connected, or failed with
/// the reason shown in its row) or its admin state was read; or
/// the cluster is unreachable (the picture then shows why).
pub fn frame_complete(state: &ClusterState) -> bool {
    match state.link {
        ClusterLink::Connecting => false,
        ClusterLink::Unreachable(_) => true,
        ClusterLink::Via(_) => {
            !state.nodes.is_empty()
                && state
                    .nodes
                    .values()
                    .filter(|n| n.is_up())
                    .all(|n| n.admin.is_some() || n.link != LinkState::Idle)
        }
    }
}

/// Writes an RGBA image as PNG.
pub fn write_png(path: &Path, image: &egui::ColorImage) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let [w, h] = image.size;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    writer.write_image_data(&bytes).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())
}
