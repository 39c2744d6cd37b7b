//! Which versions of the `hearth:plugin` WIT package this host accepts, and
//! which one a component implements.

use semver::{Version, VersionReq};

use super::PluginKind;

pub const WIT_PACKAGE: &str = "hearth:plugin";

/// The version of `wit/` this host was built with (checked against
/// `wit/types.wit` by a test).
pub const WIT_VERSION: Version = Version::new(0, 1, 1);

/// The versions a host implementing `host` accepts: the same compatibility
/// track (major ≥ 1: same major; 0.minor: same minor; 0.0.patch: exact),
/// not newer than `host` (a newer plugin may rely on additions this host
/// lacks), and no pre-releases of other versions.
pub fn accepts_version(host: &Version) -> VersionReq {
    let floor = match (host.major, host.minor) {
        (0, 0) => host.clone(),
        (0, minor) => Version::new(0, minor, 0),
        (major, _) => Version::new(major, 0, 0),
    };
    let req = format!(">={floor}, <={host}");
    VersionReq::parse(&req).unwrap_or(VersionReq::STAR)
}

/// The world and version a component implements, read from the name of the
/// `hearth:plugin/<interface>@<version>` instance it exports.
pub(super) fn implemented(exports: impl IntoIterator<Item = String>) -> Vec<(PluginKind, Version)> {
    let mut found = Vec::new();
    for name in exports {
        let Some(rest) = name
            .strip_prefix(WIT_PACKAGE)
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let Some((interface, version)) = rest.split_once('@') else {
            continue;
        };
        let kind = PluginKind::ALL
            .into_iter()
            .find(|k| k.interface() == interface);
        if let (Some(kind), Ok(version)) = (kind, Version::parse(version)) {
            found.push((kind, version));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn compatibility_tracks() {
        let host = v("1.3.0");
        let req = accepts_version(&host);
        assert!(req.matches(&v("1.3.0")));
        assert!(
            req.matches(&v("1.1.0")),
            "an older minor of the same major loads"
        );
        assert!(req.matches(&v("1.0.2")));
        assert!(!req.matches(&v("1.4.0")), "newer than the host");
        assert!(!req.matches(&v("2.0.0")));
        assert!(!req.matches(&v("0.9.0")));
        assert!(!req.matches(&v("1.2.0-rc.1")));

        let req = accepts_version(&v("0.3.2"));
        assert!(req.matches(&v("0.3.0")) && req.matches(&v("0.3.2")));
        assert!(
            !req.matches(&v("0.2.9")) && !req.matches(&v("0.4.0")) && !req.matches(&v("0.3.3"))
        );

        assert!(accepts_version(&WIT_VERSION).matches(&WIT_VERSION));
        assert!(!accepts_version(&WIT_VERSION).matches(&v("0.2.0")));
    }

    #[test]
    fn host_version_is_the_wit_version() {
        let wit = include_str!("../../../wit/types.wit");
        assert!(
            wit.contains(&format!("package {WIT_PACKAGE}@{WIT_VERSION};")),
            "wit/types.wit and WIT_VERSION disagree"
        );
    }

    #[test]
    fn reads_world_and_version_from_exports() {
        let found = implemented([
            "wasi:cli/run@0.2.0".to_owned(),
            "hearth:plugin/type-filter@0.1.0".to_owned(),
            "hearth:plugin/unknown@0.1.0".to_owned(),
        ]);
        assert_eq!(found, vec![(PluginKind::TypeFilter, v("0.1.0"))]);
    }
}
