//! Confirmation of unknown host keys: the fingerprint is shown and the user
//! trusts it (it is recorded in known_hosts) or not. Changed keys are never
//! offered here; they are refused with a warning.

use viewer::ViewerContext;
use viewer::net::Command;

/// Shows the first pending prompt as a modal dialog.
pub fn prompt_ui(ctx: &egui::Context, cx: &mut ViewerContext) {
    let Some(prompt) = cx.state.host_key_prompts.first().cloned() else {
        return;
    };
    let mut decided = false;
    egui::Modal::new(egui::Id::unique("host-key-prompt")).show(ctx, |ui| {
        ui.heading("Unknown host key");
        ui.label(format!("The agent at {} presents the host key", prompt.addr));
        ui.monospace(&prompt.fingerprint);
        ui.label("which is not in your known_hosts. Check it with the node's administrator (ssh-keygen -lf /etc/openmosix/ssh_host_ed25519_key.pub on the node).");
        ui.horizontal(|ui| {
            if ui.button("trust and connect").clicked() {
                cx.send(Command::TrustHostKey { addr: prompt.addr.clone() });
                decided = true;
            }
            if ui.button("do not connect").clicked() {
                decided = true;
            }
        });
    });
    if decided {
        cx.state.host_key_prompts.retain(|p| p != &prompt);
    }
}
