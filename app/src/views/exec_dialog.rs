//! The advanced execution dialog: a program, its arguments and how to start
//! it (the original's modes, each the equivalent `mosrun` wrapper), with the
//! host-chooser dial and the parallel first/last/invert chooser.

use std::f32::consts::PI;

use egui::{Color32, RichText, Sense, Stroke, Ui, Vec2};
use hpc::model::NodeId;

use super::file_picker::{FilePicker, start_dir};
use viewer::net::{Command, ExecMode, ExecRequest};
use viewer::{Open, ViewerContext, Window};

/// The radio buttons of the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChoice {
    /// nomig
    NoMigration,
    /// runhome
    RunHome,
    /// runon
    RunOn,
    /// cpujob
    CpuJob,
    /// iojob
    IoJob,
    /// nodecay
    NoDecay,
    /// slowdecay
    SlowDecay,
    /// fastdecay
    FastDecay,
    /// parallel
    Parallel,
}

impl ModeChoice {
    const ALL: [(ModeChoice, &'static str); 9] = [
        (ModeChoice::NoMigration, "no migration"),
        (ModeChoice::RunHome, "run home"),
        (ModeChoice::RunOn, "run on"),
        (ModeChoice::CpuJob, "cpu job"),
        (ModeChoice::IoJob, "io job"),
        (ModeChoice::NoDecay, "no decay"),
        (ModeChoice::SlowDecay, "slow decay"),
        (ModeChoice::FastDecay, "fast decay"),
        (ModeChoice::Parallel, "parallel"),
    ];

    fn uses_chooser(self) -> bool {
        !matches!(
            self,
            ModeChoice::NoMigration | ModeChoice::RunHome | ModeChoice::Parallel
        )
    }
}

/// The dialog's state.
pub struct ExecDialog {
    /// Program path.
    pub program: String,
    /// Arguments, as typed.
    pub args: String,
    /// Working directory on the home node.
    pub cwd: String,
    /// Output file ("" = `<cwd>/mosrun.out`).
    pub output: String,
    /// Home node (0 = the first up node).
    pub home: NodeId,
    /// Mode.
    pub mode: ModeChoice,
    /// The host chooser's node.
    pub target: NodeId,
    /// Parallel: first node.
    pub first: NodeId,
    /// Parallel: last node.
    pub last: NodeId,
    /// Parallel: run outside the range.
    pub invert: bool,
    picker: FilePicker,
    error: Option<String>,
}

impl Default for ExecDialog {
    fn default() -> Self {
        let home = hpc::paths::home_dir()
            .map(|h| h.display().to_string())
            .unwrap_or_else(|| "/".into());
        Self {
            program: String::new(),
            args: String::new(),
            cwd: home,
            output: String::new(),
            home: 0,
            mode: ModeChoice::RunHome,
            target: 1,
            first: 1,
            last: 1,
            invert: false,
            picker: FilePicker::new("/".into()),
            error: None,
        }
    }
}

/// The key of the execution dialog's window.
pub fn key() -> egui::Id {
    egui::Id::unique("advanced-execution")
}

impl Window for ExecDialog {
    fn key(&self) -> egui::Id {
        key()
    }

    fn title(&self) -> String {
        "advanced execution".into()
    }

    fn frame<'a>(&self, window: egui::Window<'a>) -> egui::Window<'a> {
        window
            .default_pos([40.0, 40.0])
            .vscroll(true)
            .resizable(false)
    }

    fn ui(&mut self, ui: &mut Ui, vc: &mut ViewerContext) -> Vec<Open> {
        if let Some(p) = self.picker.show(ui.ctx()) {
            self.program = p.display().to_string();
        }
        self.exec_ui(ui, vc);
        Vec::new()
    }
}

impl ExecDialog {
    /// The mode as the network side takes it.
    pub fn exec_mode(&self) -> ExecMode {
        let n = self.target;
        match self.mode {
            ModeChoice::NoMigration => ExecMode::NoMigration,
            ModeChoice::RunHome => ExecMode::RunHome,
            ModeChoice::RunOn => ExecMode::RunOn(n),
            ModeChoice::CpuJob => ExecMode::CpuJob(n),
            ModeChoice::IoJob => ExecMode::IoJob(n),
            ModeChoice::NoDecay => ExecMode::NoDecay(n),
            ModeChoice::SlowDecay => ExecMode::SlowDecay(n),
            ModeChoice::FastDecay => ExecMode::FastDecay(n),
            ModeChoice::Parallel => ExecMode::Parallel {
                first: self.first,
                last: self.last,
                invert: self.invert,
            },
        }
    }

    /// The request the dialog describes, or what is missing.
    pub fn request(&self, cx: &ViewerContext) -> Result<ExecRequest, String> {
        let program = self.program.trim();
        if program.is_empty() {
            return Err("choose a program first".into());
        }
        let args = viewer::net::spawn_args(&self.args)?;
        let cwd = self.cwd.trim();
        if !cwd.starts_with('/') {
            return Err("the working directory must be an absolute path".into());
        }
        let home = if self.home == 0 {
            cx.state
                .up_nodes()
                .first()
                .copied()
                .ok_or("no node is up")?
        } else {
            self.home
        };
        let output = if self.output.trim().is_empty() {
            format!("{}/mosrun.out", cwd.trim_end_matches('/'))
        } else {
            self.output.trim().to_string()
        };
        Ok(ExecRequest {
            program: program.to_string(),
            args,
            cwd: cwd.to_string(),
            output,
            home,
            mode: self.exec_mode(),
        })
    }

    fn exec_ui(&mut self, ui: &mut Ui, cx: &mut ViewerContext) {
        let nodes: Vec<NodeId> = cx.state.nodes.keys().copied().collect();
        egui::Grid::new("exec-fields")
            .num_columns(2)
            .show(ui, |ui| {
                let l = ui.label("program");
                ui.horizontal(|ui| {
                    ui.add(egui::TextEdit::singleline(&mut self.program).desired_width(260.0))
                        .labelled_by(l.id);
                    if ui
                        .button("📂 run-prog")
                        .on_hover_text("choose the program")
                        .clicked()
                    {
                        self.picker.dir = start_dir(&self.program);
                        self.picker.open = true;
                    }
                });
                ui.end_row();
                let l = ui.label("arguments");
                ui.add(egui::TextEdit::singleline(&mut self.args).desired_width(300.0))
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("working directory");
                ui.add(egui::TextEdit::singleline(&mut self.cwd).desired_width(300.0))
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("output file");
                ui.add(
                    egui::TextEdit::singleline(&mut self.output)
                        .hint_text("<working directory>/mosrun.out")
                        .desired_width(300.0),
                )
                .labelled_by(l.id);
                ui.end_row();
                ui.label("home node");
                let current = if self.home == 0 {
                    "first up node".to_string()
                } else {
                    format!("node {}", self.home)
                };
                egui::ComboBox::from_id_salt("exec-home")
                    .selected_text(current)
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut self.home, 0, "first up node");
                        for n in &nodes {
                            ui.selectable_value(&mut self.home, *n, format!("node {n}"));
                        }
                    });
                ui.end_row();
            });
        ui.separator();
        ui.horizontal_top(|ui| {
            egui::Grid::new("exec-modes").num_columns(3).show(ui, |ui| {
                for (i, (choice, label)) in ModeChoice::ALL.into_iter().enumerate() {
                    ui.radio_value(&mut self.mode, choice, label);
                    if i % 3 == 2 {
                        ui.end_row();
                    }
                }
            });
            ui.separator();
            ui.vertical(|ui| self.chooser_ui(ui, &nodes));
        });
        ui.separator();
        self.execute_ui(ui, cx);
    }

    fn chooser_ui(&mut self, ui: &mut Ui, nodes: &[NodeId]) {
        if self.mode.uses_chooser() {
            host_chooser_ui(ui, &mut self.target, nodes);
        } else if self.mode == ModeChoice::Parallel {
            ui.label("parallel host-chooser");
            ui.horizontal(|ui| {
                ui.label("first node");
                ui.add(egui::DragValue::new(&mut self.first).range(1..=65535));
            });
            ui.horizontal(|ui| {
                ui.label("last node");
                ui.add(egui::DragValue::new(&mut self.last).range(1..=65535));
            });
            ui.checkbox(&mut self.invert, "invert (every node outside the range)");
        } else {
            ui.label("starts at its home node");
        }
    }

    fn execute_ui(&mut self, ui: &mut Ui, cx: &mut ViewerContext) {
        let request = self.request(cx);
        match &request {
            Ok(r) => {
                let mut words = vec![r.mode.mosrun_words(), r.program.clone()];
                words.extend(r.args.iter().cloned());
                ui.weak(format!(
                    "= {}  (from node {}, output to {})",
                    words.join(" "),
                    r.home,
                    r.output
                ));
            }
            Err(e) => {
                ui.weak(e);
            }
        }
        if let Some(e) = &self.error {
            ui.colored_label(Color32::from_rgb(210, 40, 40), e);
        }
        if ui
            .add_enabled(request.is_ok(), egui::Button::new("execute"))
            .clicked()
        {
            match request {
                Ok(r) => {
                    self.error = None;
                    cx.send(Command::Execute(r));
                }
                Err(e) => self.error = Some(e),
            }
        }
    }
}

/// The original's host-chooser: a dial over the cluster's nodes with the
/// chosen node id shown large; drag the dial or use the arrows.
pub fn host_chooser_ui(ui: &mut Ui, target: &mut NodeId, nodes: &[NodeId]) {
    ui.label("host-chooser");
    if nodes.is_empty() {
        ui.label("no nodes known yet");
        return;
    }
    let index = nodes.iter().position(|n| n == target).unwrap_or(0);
    let mut index = index;
    ui.horizontal(|ui| {
        let size = 90.0;
        let (rect, response) = ui.allocate_exact_size(Vec2::splat(size), Sense::click_and_drag());
        let center = rect.center();
        let radius = size / 2.0 - 4.0;
        let painter = ui.painter();
        painter.circle(
            center,
            radius,
            ui.visuals().extreme_bg_color,
            Stroke::new(1.5, ui.visuals().text_color()),
        );
        let steps = nodes.len().max(2);
        let angle_of = |i: usize| -0.75 * PI + 1.5 * PI * i as f32 / (steps - 1) as f32;
        for i in 0..nodes.len() {
            let a = angle_of(i) - PI / 2.0;
            let dir = Vec2::new(a.cos(), a.sin());
            painter.line_segment(
                [center + dir * (radius - 6.0), center + dir * radius],
                Stroke::new(1.0, Color32::GRAY),
            );
        }
        if let Some(pos) = response.interact_pointer_pos()
            && (response.dragged() || response.clicked())
        {
            let v = pos - center;
            let a = v.y.atan2(v.x) + PI / 2.0;
            let a = if a > PI { a - 2.0 * PI } else { a };
            let t = ((a + 0.75 * PI) / (1.5 * PI)).clamp(0.0, 1.0);
            index = (t * (steps - 1) as f32).round() as usize;
        }
        let a = angle_of(index.min(nodes.len() - 1)) - PI / 2.0;
        let dir = Vec2::new(a.cos(), a.sin());
        painter.line_segment(
            [center, center + dir * (radius - 8.0)],
            Stroke::new(3.0, Color32::from_rgb(200, 60, 40)),
        );
        ui.vertical(|ui| {
            let shown = nodes.get(index).copied().unwrap_or(*target);
            ui.label(
                RichText::new(format!("{shown:>3}"))
                    .monospace()
                    .size(28.0)
                    .color(Color32::from_rgb(40, 200, 60)),
            );
            ui.horizontal(|ui| {
                if ui.button("◀").on_hover_text("previous node").clicked() {
                    index = index.saturating_sub(1);
                }
                if ui.button("▶").on_hover_text("next node").clicked() {
                    index = (index + 1).min(nodes.len() - 1);
                }
            });
        });
    });
    if let Some(n) = nodes.get(index) {
        *target = *n;
    }
}
