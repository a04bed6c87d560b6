//! A Linode StackScript: the UDF fields Linode's form shows, then the installer.
//!
//! The form's answers take effect: the installer is rendered with a mark in place
//! of each value a field can change (the first model's `launch.model`, `url` or
//! `path`; the TLS domain; the ACME email). On the host, the script checks each
//! answer against a strict pattern (so it is safe in TOML and in `sed`), falls back
//! to the manifest's value for an empty one, and puts it in place of its mark
//! before the installer runs. A field only appears when the manifest has the value
//! it changes.

use super::{install_sh, sh_quote};
use crate::manifest::{INSTALL_LOG, Manifest, Tls};

/// One form field: what Linode shows, and how its answer is checked and used.
struct Field {
    /// The UDF name; Linode exports the answer under it (and in upper case).
    name: &'static str,
    label: &'static str,
    /// The manifest's value: the form's default, and the value for an empty answer.
    default: String,
    /// A bash regular expression an answer must match.
    pattern: &'static str,
    /// What an answer must be, for the error.
    what: &'static str,
    /// What the installer holds in place of the value.
    mark: &'static str,
}

impl Field {
    fn var(&self) -> String {
        self.name.to_ascii_uppercase()
    }
}

const HF_ID_OR_PATH: &str = r"^[A-Za-z0-9._/:@+-]+$";
const GGUF_URL: &str = r"^https?://[A-Za-z0-9._~:/@+,;=%-]+/[A-Za-z0-9._-]+\.gguf$";
const ABS_PATH: &str = r"^/[A-Za-z0-9._/+-]+$";
const DOMAIN: &str =
    r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$";
const EMAIL: &str = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$";

/// The fields the manifest allows, and the manifest with their marks in place.
fn fields(m: &Manifest) -> (Vec<Field>, Manifest) {
    let mut marked = m.clone();
    let mut out = Vec::new();
    if let Some(t) = marked.models.first_mut() {
        let mark = "@@HEARTH_UDF_MODEL@@";
        let field = |label, default: &str, pattern, what| Field {
            name: "model",
            label,
            default: default.to_owned(),
            pattern,
            what,
            mark,
        };
        let launch = t
            .get_mut("launch")
            .and_then(toml::Value::as_table_mut)
            .filter(|l| l.get("model").is_some_and(toml::Value::is_str));
        if let Some(l) = launch {
            let default = l["model"].as_str().unwrap_or_default().to_owned();
            out.push(field(
                "Model: a Hugging Face id (or a path on this Linode) for vLLM / llama-server",
                &default,
                HF_ID_OR_PATH,
                "a Hugging Face id such as Qwen/Qwen2.5-7B-Instruct, or a path",
            ));
            l.insert("model".into(), mark.into());
        } else {
            for (key, label, pattern, what) in [
                (
                    "url",
                    "Model: the https:// URL of its GGUF file (downloaded at first start)",
                    GGUF_URL,
                    "an http(s) URL ending in a .gguf file name",
                ),
                (
                    "path",
                    "Model: the path of its GGUF file on this Linode",
                    ABS_PATH,
                    "an absolute path",
                ),
            ] {
                if let Some(default) = t.get(key).and_then(toml::Value::as_str).map(str::to_owned) {
                    out.push(field(label, &default, pattern, what));
                    t.insert(key.into(), mark.into());
                    break;
                }
            }
        }
    }
    let h = &mut marked.hearth;
    if matches!(h.tls, Tls::Acme | Tls::SelfSigned)
        && let Some(domain) = h.domain.replace("@@HEARTH_UDF_DOMAIN@@".into())
    {
        out.push(Field {
            name: "domain",
            label: "Domain pointing at this Linode (its TLS certificate's name)",
            default: domain,
            pattern: DOMAIN,
            what: "a domain name such as llm.example.com",
            mark: "@@HEARTH_UDF_DOMAIN@@",
        });
    }
    if h.tls == Tls::Acme
        && let Some(email) = h.admin_email.replace("@@HEARTH_UDF_ADMIN_EMAIL@@".into())
    {
        out.push(Field {
            name: "admin_email",
            label: "Email for Let's Encrypt's certificate expiry notices",
            default: email,
            pattern: EMAIL,
            what: "an email address",
            mark: "@@HEARTH_UDF_ADMIN_EMAIL@@",
        });
    }
    (out, marked)
}

pub fn stackscript(m: &Manifest) -> String {
    let (fields, marked) = fields(m);
    let udf_tags: String = fields
        .iter()
        .map(|f| {
            format!(
                "# <UDF name=\"{}\" label=\"{}\" default=\"{}\" />\n",
                f.name,
                f.label,
                f.default.replace(['"', '<', '>'], "")
            )
        })
        .collect();
    let record = if fields.is_empty() {
        ": >\"$R/etc/hearth/stackscript.env\"\n".to_owned()
    } else {
        let lines: String = fields
            .iter()
            .map(|f| {
                format!(
                    "  printf 'HEARTH_UDF_{0}=%q\\n' \"${{{0}:-${{{1}:-}}}}\"\n",
                    f.var(),
                    f.name
                )
            })
            .collect();
        format!("{{\n{lines}}} >\"$R/etc/hearth/stackscript.env\"\n")
    };
    let answers: String = fields
        .iter()
        .map(|f| {
            format!(
                "{name}_value=$(udf {name} \"${{{var}:-${{{name}:-}}}}\" {default} {pattern} {what})\n",
                var = f.var(),
                name = f.name,
                default = sh_quote(&f.default),
                pattern = sh_quote(f.pattern),
                what = sh_quote(f.what),
            )
        })
        .collect();
    let seds: String = fields
        .iter()
        .map(|f| format!(" -e \"s|{}|${{{}_value}}|g\"", f.mark, f.name))
        .collect();
    // The answers, checked (and the default for an empty one), before anything is
    // installed; then put in place of their marks.
    let (check, apply) = if fields.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format!(
                "# FIELD ANSWER DEFAULT PATTERN WHAT: the answer (or the default), if it matches.\n\
                 udf() {{\n  \
                   local v=${{2:-$3}}\n  \
                   if [[ ! $v =~ $4 ]]; then\n    \
                     echo \"hearth: the form's $1 field must be $5, not '$v': deploy again with a corrected value\" >&2\n    \
                     return 1\n  \
                   fi\n  \
                   printf '%s' \"$v\"\n\
                 }}\n\
                 {answers}"
            ),
            format!("sed -i{seds} \"$R/opt/hearth/install.sh\"\n"),
        )
    };
    format!(
        "#!/bin/bash\n\
         {udf_tags}\
         # Hearth on {host}, rendered from deploy.toml by hearth-deploy (release {version}).\n\
         # The form's answers are recorded in /etc/hearth/stackscript.env, checked, and\n\
         # written into the installer in place of their marks (an empty one keeps the\n\
         # manifest's value). HEARTH_ROOT=DIR installs under DIR (tests), as the installer.\n\
         set -euo pipefail\n\
         R=${{HEARTH_ROOT:-}}\n\
         mkdir -p \"$R/var/log/hearth\" \"$R/opt/hearth\" \"$R/etc/hearth\"\n\
         # The install log, mirrored to the serial console (Lish).\n\
         if [ -z \"$R\" ]; then exec > >(tee -a {log} /dev/console) 2>&1; fi\n\
         umask 022\n\
         {record}\
         {check}\
         cat >\"$R/opt/hearth/install.sh\" <<'HEARTH_INSTALLER_EOF'\n\
         {script}\
         HEARTH_INSTALLER_EOF\n\
         {apply}\
         chmod 0755 \"$R/opt/hearth/install.sh\"\n\
         sh \"$R/opt/hearth/install.sh\"\n",
        host = m.host.name,
        version = m.release.version,
        log = INSTALL_LOG,
        script = install_sh(&marked),
    )
}
