//! The report: one section per scenario, each Ferry figure next to its
//! same-run baseline with the ratio and a plain verdict, written as
//! `bench-report.md` and `bench-report.json`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::stats::{Stats, Unit, finite};

/// One Ferry figure against one baseline, both measured in the same run.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub what: String,
    pub unit: Unit,
    pub ferry: Stats,
    pub baseline_name: String,
    pub baseline: Stats,
}

impl Comparison {
    pub fn new(
        what: impl Into<String>,
        unit: Unit,
        ferry: &[f64],
        baseline_name: impl Into<String>,
        baseline: &[f64],
    ) -> Comparison {
        Comparison {
            what: what.into(),
            unit,
            ferry: Stats::of(ferry),
            baseline_name: baseline_name.into(),
            baseline: Stats::of(baseline),
        }
    }

    /// Ferry's median over the baseline's median.
    pub fn ratio(&self) -> f64 {
        self.ferry.median / self.baseline.median
    }

    /// True when Ferry does worse than the baseline by more than 5 %.
    pub fn ferry_worse(&self) -> bool {
        let r = self.ratio();
        if self.unit.higher_is_better() {
            r < 0.95
        } else {
            r > 1.05
        }
    }

    /// "Ferry is slower", "Ferry uses more", or the opposite, or "on par".
    pub fn verdict(&self) -> String {
        let r = self.ratio();
        if !r.is_finite() {
            return "n/a".to_owned();
        }
        let (worse, better) = match self.unit {
            Unit::Rate(_) | Unit::Ms | Unit::Secs => ("slower", "faster"),
            Unit::Bytes | Unit::KiB | Unit::CpuPercent | Unit::Lower(_) => {
                ("uses more", "uses less")
            }
        };
        let factor = if self.unit.higher_is_better() {
            1.0 / r
        } else {
            r
        };
        if self.ferry_worse() {
            format!("**Ferry {worse}** ({factor:.2}× worse)")
        } else if (self.unit.higher_is_better() && r > 1.05)
            || (!self.unit.higher_is_better() && r < 0.95)
        {
            format!("Ferry {better} ({:.2}× better)", 1.0 / factor)
        } else {
            "on par (within 5 %)".to_owned()
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "what": self.what, "unit": self.unit.label(),
            "higher_is_better": self.unit.higher_is_better(),
            "ferry": self.ferry.json(),
            "baseline_name": self.baseline_name, "baseline": self.baseline.json(),
            "ratio_ferry_vs_baseline": finite(self.ratio()),
            "ferry_worse": self.ferry_worse(),
            "verdict": self.verdict(),
        })
    }
}

/// What one scenario measured.
#[derive(Debug, Default)]
pub struct Section {
    pub name: String,
    pub title: String,
    /// Markdown: what was measured, how, and against what.
    pub intro: String,
    pub comparisons: Vec<Comparison>,
    /// Markdown after the comparison table: extra tables and notes.
    pub notes: String,
    /// Every figure, for the JSON report.
    pub details: Value,
    pub seconds: f64,
    /// The panic message when the scenario failed.
    pub failed: Option<String>,
}

impl Section {
    pub fn new(name: &str, title: &str) -> Section {
        Section {
            name: name.to_owned(),
            title: title.to_owned(),
            details: Value::Null,
            ..Section::default()
        }
    }

    pub fn compare(&mut self, c: Comparison) {
        eprintln!(
            "  {}: Ferry {} vs {} {} {} → {:.3}× — {}",
            c.what,
            c.unit.fmt_stats(&c.ferry),
            c.baseline_name,
            c.unit.fmt_stats(&c.baseline),
            c.unit.label(),
            c.ratio(),
            c.verdict()
        );
        self.comparisons.push(c);
    }

    pub fn note(&mut self, text: impl AsRef<str>) {
        self.notes.push_str(text.as_ref());
        self.notes.push('\n');
    }

    fn markdown(&self, out: &mut String) {
        let _ = writeln!(out, "## {}\n", self.title);
        if let Some(e) = &self.failed {
            let _ = writeln!(
                out,
                "**FAILED** after {:.0} s: `{}`\n",
                self.seconds,
                e.replace('`', "'")
            );
        }
        if !self.intro.is_empty() {
            let _ = writeln!(out, "{}\n", self.intro.trim_end());
        }
        if !self.comparisons.is_empty() {
            let _ = writeln!(
                out,
                "| measure | unit | Ferry | baseline | baseline value | Ferry / baseline | verdict |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|");
            for c in &self.comparisons {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {:.3}× | {} |",
                    c.what,
                    c.unit.label(),
                    c.unit.fmt_stats(&c.ferry),
                    c.baseline_name,
                    c.unit.fmt_stats(&c.baseline),
                    c.ratio(),
                    c.verdict()
                );
            }
            out.push('\n');
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "{}", self.notes.trim_end());
            out.push('\n');
        }
        let _ = writeln!(out, "_Scenario time: {:.0} s._\n", self.seconds);
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name, "title": self.title, "seconds": self.seconds,
            "failed": self.failed,
            "comparisons": self.comparisons.iter().map(Comparison::json).collect::<Vec<_>>(),
            "details": self.details,
        })
    }
}

/// The whole run.
#[derive(Debug)]
pub struct Report {
    pub machine: Value,
    pub settings: Value,
    pub sections: Vec<Section>,
    pub seconds: f64,
}

impl Report {
    pub fn new(settings: Value) -> Report {
        Report {
            machine: machine(),
            settings,
            sections: Vec::new(),
            seconds: 0.0,
        }
    }

    pub fn failed(&self) -> bool {
        self.sections.iter().any(|s| s.failed.is_some())
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(out, "# ferry-bench report\n");
        let sc = &self.settings["scale"];
        let _ = writeln!(
            out,
            "Run {} at commit `{}`, {} build, {} scale, {} run(s) per measurement; scenarios {}; total {:.0} s.\n",
            m["date"].as_str().unwrap_or("?"),
            m["commit"].as_str().unwrap_or("?"),
            m["profile"].as_str().unwrap_or("?"),
            if sc["quick"] == true {
                "`--quick`"
            } else {
                "default"
            },
            sc["runs"],
            self.settings["scenarios"],
            self.seconds
        );
        let _ = writeln!(
            out,
            "Machine: {} cores ({}), {:.1} GiB RAM, Linux {}, {}; peers: {}.\n",
            m["nproc"],
            m["cpu_model"].as_str().unwrap_or("?"),
            m["mem_kib"].as_f64().unwrap_or(0.0) / 1024.0 / 1024.0,
            m["kernel"].as_str().unwrap_or("?"),
            m["rustc"].as_str().unwrap_or("?"),
            m["peers"].as_str().unwrap_or("?"),
        );
        let _ = writeln!(
            out,
            "Each figure is the median of the runs, (min–max) when there were several. \
             The ratio is Ferry's median over the baseline's median, measured in the same run. \
             A verdict in bold means Ferry does worse than its baseline by more than 5 %.\n"
        );
        let worse: Vec<(&Section, &Comparison)> = self
            .sections
            .iter()
            .flat_map(|s| s.comparisons.iter().map(move |c| (s, c)))
            .filter(|(_, c)| c.ferry_worse())
            .collect();
        if !worse.is_empty() {
            let _ = writeln!(
                out,
                "**Where Ferry is slower or bigger than its baseline:**\n"
            );
            for (s, c) in worse {
                let _ = writeln!(
                    out,
                    "- {}: {}: {:.2}× of {} ({} vs {} {})",
                    s.title,
                    c.what,
                    c.ratio(),
                    c.baseline_name,
                    c.unit.fmt(c.ferry.median),
                    c.unit.fmt(c.baseline.median),
                    c.unit.label()
                );
            }
            out.push('\n');
        }
        let failed: Vec<&str> = self
            .sections
            .iter()
            .filter(|s| s.failed.is_some())
            .map(|s| s.name.as_str())
            .collect();
        if !failed.is_empty() {
            let _ = writeln!(out, "**Failed scenarios:** {}\n", failed.join(", "));
        }
        for s in &self.sections {
            s.markdown(&mut out);
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "machine": self.machine,
            "settings": self.settings,
            "seconds": self.seconds,
            "failed": self.failed(),
            "sections": self.sections.iter().map(Section::json).collect::<Vec<_>>(),
        })
    }

    /// Writes `bench-report.md` and `bench-report.json` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("bench-report.md"), self.markdown())?;
        let json = serde_json::to_string_pretty(&self.json()).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("bench-report.json"), json)
    }
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
}

/// The machine and the tool versions, for the report.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mosquitto = ferry_hil_tests::find_tool("mosquitto")
        .and_then(|p| command_line(&p.to_string_lossy(), &["-h"]))
        .unwrap_or_else(|| "mosquitto not found".to_owned());
    let bin = ferry_hil_tests::bin_dir();
    let profile = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    json!({
        "date": command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "commit": command_line("git", &["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"]),
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu_model,
        "mem_kib": mem_kib,
        "kernel": kernel,
        "rustc": command_line("rustc", &["--version"]),
        "profile": profile,
        "binaries": bin,
        "peers": mosquitto,
    })
}
