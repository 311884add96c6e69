//! Permissions on databases: what a token's roles grant.
//!
//! A [`Grant`] gives one [`Permission`] on the databases a name pattern
//! matches (`plant_*`, `*`), optionally narrowed to the measurements a
//! second pattern matches. `admin` includes every other permission on what
//! it covers. The built-in roles are grants on `*`: `read` reads
//! everything, `write` writes everything, `admin` may do anything.
//! Permissions that are not about one database's data (token and role
//! management, the fleet, maintenance runs) need their grant on every
//! database: a grant on database `*` without a measurement pattern.

use serde::{Deserialize, Serialize};

use super::binding::glob;
use super::{Permission, Role};

/// The longest pattern, in bytes.
const MAX_PATTERN_LEN: usize = 256;

/// A database or measurement name, or one with `*` wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NamePattern(String);

impl NamePattern {
    pub fn new(pattern: &str) -> Result<NamePattern, String> {
        if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "a name pattern is 1..={MAX_PATTERN_LEN} bytes (a name, or one with * wildcards)"
            ));
        }
        if pattern.chars().any(char::is_control) {
            return Err(format!(
                "name pattern {pattern:?} holds a control character"
            ));
        }
        Ok(NamePattern(pattern.to_owned()))
    }

    /// `*`: every name.
    pub fn any() -> NamePattern {
        NamePattern("*".to_owned())
    }

    pub fn is_any(&self) -> bool {
        self.0.bytes().all(|b| b == b'*')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }
}

impl TryFrom<String> for NamePattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        NamePattern::new(&s)
    }
}

impl From<NamePattern> for String {
    fn from(p: NamePattern) -> String {
        p.0
    }
}

/// One permission on the databases (and measurements) patterns match.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub permission: Permission,
    pub database: NamePattern,
    /// `None`: every measurement of the matching databases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<NamePattern>,
}

impl Grant {
    fn gives(&self, permission: Permission) -> bool {
        self.permission == permission || self.permission == Permission::Admin
    }

    fn whole_databases(&self) -> bool {
        self.measurement.as_ref().is_none_or(NamePattern::is_any)
    }
}

/// Everything a token may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(pub Vec<Grant>);

impl Grants {
    /// What a built-in role grants.
    pub fn of_role(role: Role) -> Grants {
        let on_all = |permission| Grant {
            permission,
            database: NamePattern::any(),
            measurement: None,
        };
        match role {
            Role::Admin => Grants(vec![on_all(Permission::Admin)]),
            Role::Write => Grants(vec![on_all(Permission::Write)]),
            Role::Read => Grants(vec![on_all(Permission::Read)]),
            Role::None => Grants(Vec::new()),
        }
    }

    /// `permission` on table `database.measurement`.
    pub fn allows(&self, permission: Permission, database: &str, measurement: &str) -> bool {
        self.0.iter().any(|g| {
            g.gives(permission)
                && g.database.matches(database)
                && g.measurement
                    .as_ref()
                    .is_none_or(|m| m.matches(measurement))
        })
    }

    /// `permission` on at least part of `database` (it is listed).
    pub fn touches(&self, permission: Permission, database: &str) -> bool {
        self.0
            .iter()
            .any(|g| g.gives(permission) && g.database.matches(database))
    }

    /// `permission` on every table of `database` (a grant not narrowed to
    /// measurements).
    pub fn whole(&self, permission: Permission, database: &str) -> bool {
        self.0
            .iter()
            .any(|g| g.gives(permission) && g.database.matches(database) && g.whole_databases())
    }

    /// `permission` on every table of every database.
    pub fn everywhere(&self, permission: Permission) -> bool {
        self.0
            .iter()
            .any(|g| g.gives(permission) && g.database.is_any() && g.whole_databases())
    }

    /// `permission` on something.
    pub fn anywhere(&self, permission: Permission) -> bool {
        self.0.iter().any(|g| g.gives(permission))
    }

    pub fn extend(&mut self, more: impl IntoIterator<Item = Grant>) {
        for g in more {
            if !self.0.contains(&g) {
                self.0.push(g);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(permission: Permission, db: &str, m: Option<&str>) -> Grant {
        Grant {
            permission,
            database: NamePattern::new(db).unwrap(),
            measurement: m.map(|m| NamePattern::new(m).unwrap()),
        }
    }

    #[test]
    fn grants_cover_what_their_patterns_match() {
        let g = Grants(vec![
            grant(Permission::Read, "plant_*", None),
            grant(Permission::Write, "lab", Some("vib*")),
        ]);
        assert!(g.allows(Permission::Read, "plant_a", "boiler"));
        assert!(!g.allows(Permission::Read, "office", "boiler"));
        assert!(!g.allows(Permission::Write, "plant_a", "boiler"));
        assert!(g.allows(Permission::Write, "lab", "vibration"));
        assert!(!g.allows(Permission::Write, "lab", "temp"));
        assert!(g.touches(Permission::Write, "lab"));
        assert!(!g.everywhere(Permission::Read));
        assert!(g.anywhere(Permission::Read));
        assert!(!g.anywhere(Permission::Delete));
        // admin includes the rest, on what it covers.
        let a = Grants(vec![grant(Permission::Admin, "plant_b", None)]);
        assert!(a.allows(Permission::Delete, "plant_b", "x"));
        assert!(!a.allows(Permission::Read, "plant_c", "x"));
        assert!(!a.everywhere(Permission::Admin));
        assert!(Grants::of_role(Role::Admin).everywhere(Permission::Delete));
        assert!(!Grants::of_role(Role::Write).anywhere(Permission::Read));
        assert!(Grants::of_role(Role::None).0.is_empty());
    }

    #[test]
    fn patterns_parse_from_json() {
        let g: Grant =
            serde_json::from_str(r#"{"permission":"read","database":"plant_*"}"#).unwrap();
        assert_eq!(g.database.as_str(), "plant_*");
        assert!(serde_json::from_str::<Grant>(r#"{"permission":"root","database":"x"}"#).is_err());
        assert!(serde_json::from_str::<Grant>(r#"{"permission":"read","database":""}"#).is_err());
        assert!(
            serde_json::from_str::<Grant>(r#"{"permission":"read","database":"x","y":1}"#).is_err()
        );
    }
}
