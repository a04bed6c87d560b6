//! `hearth deploy plan`: which services a change touches, in the order they
//! deploy, grouped by environment.
//!
//! A service is planned when a file under its folder changed, when its
//! environment's entry in the infra file changed, or when it depends
//! (directly or not) on a planned service. Dependencies deploy first. A
//! service whose folder the change removed is planned as a removal in the
//! environment its old service.toml named (apply stops it there).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

use super::GitopsError;
use super::model::{INFRA_FILE, Infra, Service};
use super::repo::{Changes, Repo, changed_files, file_at};

/// A service to deploy and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedService {
    pub name: String,
    pub kind: String,
    pub reason: String,
}

/// One environment's services, dependencies first, and the services
/// removed from it (stopped first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvPlan {
    pub environment: String,
    pub runner: String,
    pub services: Vec<PlannedService>,
    pub removals: Vec<String>,
}

/// The whole plan: only environments with something to deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub environments: Vec<EnvPlan>,
    /// Things worth saying that change nothing (a removed service, a missing base).
    pub notices: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.environments
            .iter()
            .all(|e| e.services.is_empty() && e.removals.is_empty())
    }

    /// The GitHub Actions matrix: one entry per environment with work.
    pub fn matrix(&self) -> serde_json::Value {
        let include: Vec<serde_json::Value> = self
            .environments
            .iter()
            .filter(|e| !e.services.is_empty() || !e.removals.is_empty())
            .map(|e| serde_json::json!({"environment": e.environment, "runner": e.runner}))
            .collect();
        serde_json::json!({ "include": include })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "any": !self.is_empty(),
            "environments": self.environments,
            "matrix": self.matrix(),
            "notices": self.notices,
        })
    }

    /// The services of one environment, in order.
    pub fn services_of(&self, environment: &str) -> Vec<String> {
        self.environments
            .iter()
            .filter(|e| e.environment == environment)
            .flat_map(|e| e.services.iter().map(|s| s.name.clone()))
            .collect()
    }
}

/// Plans the changes from `since` to `head` (None: the working tree, which
/// in CI is the commit checked out), or every service when `since` is None.
pub fn plan(repo: &Repo, since: Option<&str>, head: Option<&str>) -> Result<Plan, GitopsError> {
    let infra = repo.infra()?;
    let services = repo.parsed_services()?;
    let mut notices = Vec::new();
    let mut removed = BTreeMap::new();
    let reasons = match since {
        None => services
            .keys()
            .map(|n| (n.clone(), "all services".to_string()))
            .collect(),
        Some(since) => {
            let changes = changed_files(&repo.root, since, head)?;
            let reasons = changed_services(repo, infra, &services, since, &changes, &mut notices);
            removed = removed_services(repo, &services, since, &changes, &mut notices);
            reasons
        }
    };
    let reasons = with_dependents(&services, reasons);
    let order = dependency_order(&services)?;
    let mut environments = Vec::new();
    // In the order the infra file declares them: the first is often the one
    // people look at first.
    for env in infra.in_file_order() {
        let planned: Vec<PlannedService> = order
            .iter()
            .filter(|n| services[*n].environment == env.name)
            .filter_map(|n| {
                reasons.get(n).map(|r| PlannedService {
                    name: n.clone(),
                    kind: services[n].kind.as_str().to_string(),
                    reason: r.clone(),
                })
            })
            .collect();
        let removals: Vec<String> = removed
            .iter()
            .filter(|(_, e)| **e == env.name)
            .map(|(n, _)| n.clone())
            .collect();
        if !planned.is_empty() || !removals.is_empty() {
            environments.push(EnvPlan {
                environment: env.name.clone(),
                runner: env.runner.clone(),
                services: planned,
                removals,
            });
        }
    }
    for (name, s) in &services {
        if reasons.contains_key(name) && !infra.environments.contains_key(&s.environment) {
            return Err(GitopsError::UnknownEnvironment {
                name: s.environment.clone(),
                file: INFRA_FILE,
                known: infra.names(),
            });
        }
    }
    Ok(Plan {
        environments,
        notices,
    })
}

/// The services a set of changed files touches directly, each with why.
pub(crate) fn changed_services(
    repo: &Repo,
    infra: &Infra,
    services: &BTreeMap<String, Service>,
    since: &str,
    changes: &Changes,
    notices: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let files = match changes {
        Changes::All(why) => {
            notices.push(why.clone());
            return services
                .keys()
                .map(|n| {
                    (
                        n.clone(),
                        "every service (no usable base commit)".to_string(),
                    )
                })
                .collect();
        }
        Changes::Files(files) => files,
    };
    let mut reasons = BTreeMap::new();
    for file in files {
        if let Some(rest) = file.strip_prefix("services/") {
            let Some((name, _)) = rest.split_once('/') else {
                continue;
            };
            if services.contains_key(name) {
                reasons
                    .entry(name.to_string())
                    .or_insert_with(|| format!("changed {file}"));
            }
        } else if file == INFRA_FILE {
            let old = file_at(&repo.root, since, INFRA_FILE).map(|t| Infra::parse(&t));
            for env in infra.environments.values() {
                let same = matches!(&old, Some(Ok(o)) if o.environments.get(&env.name).is_some_and(|e| e.same_as(env)));
                if same {
                    continue;
                }
                for (name, s) in services {
                    if s.environment == env.name {
                        reasons.entry(name.clone()).or_insert_with(|| {
                            format!("environment {} changed in {INFRA_FILE}", env.name)
                        });
                    }
                }
            }
        }
    }
    reasons
}

/// The services whose folder the change removed, each with the environment
/// its service.toml named at `since` (where apply will stop it).
fn removed_services(
    repo: &Repo,
    services: &BTreeMap<String, Service>,
    since: &str,
    changes: &Changes,
    notices: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let Changes::Files(files) = changes else {
        return BTreeMap::new();
    };
    let gone: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| f.strip_prefix("services/")?.split_once('/'))
        .map(|(name, _)| name)
        .filter(|name| !services.contains_key(*name) && !repo.services.contains_key(*name))
        .collect();
    let mut out = BTreeMap::new();
    for name in gone {
        let old = file_at(&repo.root, since, &format!("services/{name}/service.toml"))
            .and_then(|text| Service::parse(name, &text).0);
        match old {
            Some(s) => {
                out.insert(name.to_string(), s.environment);
            }
            None => notices.push(format!(
                "services/{name} was removed, and its service.toml at {since} does not say its environment: `hearth deploy apply --env NAME --all` stops it where it was deployed"
            )),
        }
    }
    out
}

/// Adds every service that depends, directly or not, on one in `reasons`.
pub(crate) fn with_dependents(
    services: &BTreeMap<String, Service>,
    mut reasons: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut queue: VecDeque<String> = reasons.keys().cloned().collect();
    while let Some(dep) = queue.pop_front() {
        for (name, s) in services {
            if s.depends_on.contains(&dep) && !reasons.contains_key(name) {
                reasons.insert(name.clone(), format!("depends on {dep}"));
                queue.push_back(name.clone());
            }
        }
    }
    reasons
}

/// Every service, each after what it depends on (ties by name); an error on
/// a cycle or an unknown dependency.
pub(crate) fn dependency_order(
    services: &BTreeMap<String, Service>,
) -> Result<Vec<String>, GitopsError> {
    let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, s) in services {
        for d in &s.depends_on {
            if !services.contains_key(d) {
                return Err(GitopsError::Refused(format!(
                    "services/{name}/service.toml: depends_on names {d:?}, which is not a service (`hearth deploy check` says where)"
                )));
            }
        }
        waiting.insert(name, s.depends_on.len());
    }
    let mut ready: BTreeSet<&str> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut order = Vec::new();
    while let Some(next) = ready.pop_first() {
        order.push(next.to_string());
        for (name, s) in services {
            // A name listed twice counts twice, as it was counted.
            let hits = s.depends_on.iter().filter(|d| *d == next).count();
            if hits > 0
                && let Some(n) = waiting.get_mut(name.as_str())
            {
                *n -= hits;
                if *n == 0 {
                    ready.insert(name);
                }
            }
        }
    }
    if order.len() < services.len() {
        let stuck: Vec<&str> = services
            .keys()
            .map(String::as_str)
            .filter(|n| !order.iter().any(|o| o == n))
            .collect();
        return Err(GitopsError::Refused(format!(
            "depends_on has a cycle among {} (`hearth deploy check` says where)",
            stuck.join(", ")
        )));
    }
    Ok(order)
}
