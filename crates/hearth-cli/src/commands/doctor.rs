//! `hearth doctor`: check this host and config before serving. The checks live in
//! `crate::doctor`; this parses the flags, loads the config, prints, and exits.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hearth_config::{ProcessEnv, env};

use crate::doctor::{self, Loaded};
use crate::output;

/// Exit code when the config file cannot be read at all (as clap's bad usage).
const UNREADABLE_CONFIG: u8 = 2;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Config file; default ./hearth.toml when it exists, else built-in defaults.
    #[arg(long, short, env = "HEARTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the checks as JSON: {"checks":[{group,name,status,reason,remedy}],"summary":{ok,warn,fail}}.
    #[arg(long)]
    pub json: bool,
    /// On any fail, also write the failures to this file (the status file the
    /// login banner shows, `/run/hearth/status` on a deployed host): a service
    /// whose start is stopped by doctor says why where its admin looks.
    #[arg(long, value_name = "FILE")]
    pub status_file: Option<PathBuf>,
    /// Check the Kubernetes cluster instead of this host, before `helm install`: the
    /// API server, GPU nodes, a default StorageClass, an IngressClass, cert-manager.
    /// Uses $KUBECONFIG, else ~/.kube/config, else the pod's service account.
    #[arg(long)]
    pub kube: bool,
    /// With --kube: the Helm values file; its models must fit the nodes' GPUs and
    /// memory, and its ingress class, issuer and storage classes must exist.
    #[arg(long, value_name = "FILE", requires = "kube")]
    pub values: Option<PathBuf>,
    /// With --kube: the kubeconfig to use (instead of $KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "FILE", requires = "kube")]
    pub kubeconfig: Option<PathBuf>,
    /// With --kube: the kubeconfig's context (instead of its current-context).
    #[arg(long, value_name = "NAME", requires = "kube")]
    pub context: Option<String>,
}

pub fn run(args: DoctorArgs) -> ExitCode {
    let (report, loaded) = if args.kube {
        let opts = doctor::kube::KubeOptions {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
            values: args.values.clone(),
        };
        (doctor::kube::run(&opts), None)
    } else {
        let loaded = load(args.config.as_deref());
        let dev = std::env::var_os(env::DOCTOR_DEV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev"));
        (doctor::run(&loaded, &dev), Some(loaded))
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => output::line(j),
            Err(e) => output::err(format!("error: {e}")),
        }
    } else {
        for line in report.human() {
            output::line(line);
        }
    }
    if let Some(path) = &args.status_file
        && report.summary.fail > 0
    {
        let mut text = format!(
            "Hearth {}: not started: `hearth doctor` found {} problem(s); it checks again at each start\n",
            env!("CARGO_PKG_VERSION"),
            report.summary.fail
        );
        // The failures and their remedies (the lines under a FAIL), not the passes.
        let mut in_fail = false;
        for line in report.human() {
            if line.starts_with("FAIL") {
                in_fail = true;
            } else if !line.starts_with(' ') {
                in_fail = false;
            }
            if in_fail {
                text.push_str("  ");
                text.push_str(&line);
                text.push('\n');
            }
        }
        if let Err(e) = hearth_server::status::write(path, &text) {
            output::err(format!("warning: cannot write {}: {e}", path.display()));
        }
    }
    if matches!(loaded, Some(Loaded::Unreadable(..))) {
        ExitCode::from(UNREADABLE_CONFIG)
    } else if report.summary.fail > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// As `hearth serve` loads it, but telling an unreadable file (exit 2) from an
/// invalid one (a fail like any other).
fn load(path: Option<&Path>) -> Loaded {
    let fallback = Path::new("hearth.toml");
    let path = path.or_else(|| fallback.exists().then_some(fallback));
    let (text, source) = match path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(text) => (text, p.display().to_string()),
            Err(e) => return Loaded::Unreadable(p.to_owned(), e),
        },
        None => (String::new(), "defaults".to_owned()),
    };
    match hearth_config::load_str(&text, &source, &ProcessEnv) {
        Ok(config) => Loaded::Valid(Box::new(config), source),
        Err(e) => Loaded::Invalid(e),
    }
}
