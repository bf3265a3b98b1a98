//! The key layout: every key of a registry shares the Redis Cluster hash tag
//! `{namespace}`, so a registry lives in one slot.

/// `lockstep:{ns}:<suffix>`.
pub fn key(namespace: &str, suffix: &str) -> String {
    format!("lockstep:{{{namespace}}}:{suffix}")
}

/// The hash of a registry's epoch and schema.
pub fn meta_key(namespace: &str) -> String {
    key(namespace, "meta")
}

/// The hash of a field: one entry per instant.
pub fn field_key(namespace: &str, field: &str) -> String {
    key(namespace, &format!("field:{field}"))
}

/// The string that remembers a write's instants, so a retried write takes
/// effect once.
pub fn write_key(namespace: &str, id: &str) -> String {
    key(namespace, &format!("write:{id}"))
}

/// The hash of a registry's fleet: one record per process that fetched
/// with a report.
pub fn fleet_key(namespace: &str) -> String {
    key(namespace, "fleet")
}

/// The sorted set of when each record of the fleet expires, in ms.
pub fn fleet_expiry_key(namespace: &str) -> String {
    key(namespace, "fleet:expiry")
}

/// The hash of every build's schema: digest -> JSON.
pub fn schemas_key(namespace: &str) -> String {
    key(namespace, "schemas")
}

/// The sorted set of when each build's schema was last published, in ms.
pub fn schemas_published_key(namespace: &str) -> String {
    key(namespace, "schemas:published")
}

/// The pattern of every registry's meta key, for `SCAN`.
pub const META_PATTERN: &str = "lockstep:{*}:meta";

/// The namespace of a meta key.
pub fn namespace_of_meta(key: &str) -> Option<&str> {
    key.strip_prefix("lockstep:{")?.strip_suffix("}:meta")
}

/// The instant a hash field of a field's key names, if it names one: the
/// canonical decimal lockstep writes, below 10^15 (the scripts read the
/// same, so an instant the store prunes or cancels is one fetched).
pub fn instant(field: &str) -> Option<crate::tick::Millis> {
    let n: crate::tick::Millis = field.parse().ok()?;
    (n.to_string() == field && n.abs() < 1_000_000_000_000_000).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag() {
        assert_eq!(meta_key("flags"), "lockstep:{flags}:meta");
        assert_eq!(field_key("flags", "theme"), "lockstep:{flags}:field:theme");
        assert_eq!(write_key("flags", "ab"), "lockstep:{flags}:write:ab");
        assert_eq!(fleet_key("flags"), "lockstep:{flags}:fleet");
        assert_eq!(fleet_expiry_key("flags"), "lockstep:{flags}:fleet:expiry");
        assert_eq!(schemas_key("flags"), "lockstep:{flags}:schemas");
        assert_eq!(
            schemas_published_key("flags"),
            "lockstep:{flags}:schemas:published"
        );
        assert_eq!(namespace_of_meta("lockstep:{flags}:meta"), Some("flags"));
        // A registry that only has a fleet is not listed.
        assert_eq!(namespace_of_meta("lockstep:{flags}:fleet"), None);
    }

    #[test]
    fn only_canonical_decimals_are_instants() {
        assert_eq!(instant("1733000000000"), Some(1_733_000_000_000));
        assert_eq!(instant("-5"), Some(-5));
        for bad in ["", "007", "+5", "1e3", " 12", "foobar", "1000000000000000"] {
            assert_eq!(instant(bad), None, "{bad:?}");
        }
    }
}
