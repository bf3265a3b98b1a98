//! Replication as a server tells it (`INFO replication`): whether it is a
//! primary or a replica, the replication id it serves or follows, its
//! offset, and a replica's link to its primary. What the replicas' fetches
//! and a commit's wait judge a server by.

use redis::Value;

use super::connection::Connector;
use super::reply::text;

/// What a server says of its place in replication (`INFO replication`).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Replication {
    /// A primary: its replication id and offset.
    Primary { id: String, offset: i64 },
    /// A replica: whether its link to its primary is up, the replication
    /// id it follows, and the offset it has processed.
    Replica {
        linked: bool,
        id: String,
        offset: i64,
    },
}

/// `INFO replication` of the server `connector` reaches: `None` when it
/// does not answer, refuses, or says neither primary nor replica.
pub(super) async fn ask(connector: &Connector) -> Option<Replication> {
    let mut connection = connector.connection().await.ok()?;
    let info: Value = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut connection)
        .await
        .ok()?;
    parse(&info)
}

/// A server's place in replication, from its `INFO replication`; `None`
/// from anything else.
pub(super) fn parse(info: &Value) -> Option<Replication> {
    let text = match info {
        Value::VerbatimString { text, .. } => text.clone(),
        other => text(other)?,
    };
    let field = |name: &str| {
        text.lines().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::trim)
        })
    };
    let id = field("master_replid")?.to_owned();
    match field("role")? {
        "master" => Some(Replication::Primary {
            id,
            offset: field("master_repl_offset")?.parse().ok()?,
        }),
        "slave" => Some(Replication::Replica {
            linked: field("master_link_status")? == "up"
                && field("master_sync_in_progress").is_none_or(|s| s == "0"),
            id,
            offset: field("slave_repl_offset")?.parse().ok()?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    /// `INFO replication` as Redis 7 writes it, with `role` and `lines`.
    fn info(role: &str, lines: &[&str]) -> Value {
        let mut text = format!("# Replication\r\nrole:{role}\r\n");
        for line in lines {
            text.push_str(line);
            text.push_str("\r\n");
        }
        bulk(&text)
    }

    #[test]
    fn a_replica_is_fit_only_when_its_link_is_up_and_it_says_whom_it_follows() {
        let replica = |status: &str, syncing: &str| {
            info(
                "slave",
                &[
                    "master_host:127.0.0.1",
                    "master_port:6379",
                    &format!("master_link_status:{status}"),
                    &format!("master_sync_in_progress:{syncing}"),
                    "slave_repl_offset:1234",
                    "connected_slaves:0",
                    "master_replid:56ae749e6a51ac5bdcd07030c54a3c891f805121",
                    "master_repl_offset:1234",
                ],
            )
        };
        let id = "56ae749e6a51ac5bdcd07030c54a3c891f805121".to_owned();
        assert_eq!(
            parse(&replica("up", "0")),
            Some(Replication::Replica {
                linked: true,
                id: id.clone(),
                offset: 1234
            })
        );
        for (status, syncing) in [("down", "0"), ("up", "1")] {
            assert_eq!(
                parse(&replica(status, syncing)),
                Some(Replication::Replica {
                    linked: false,
                    id: id.clone(),
                    offset: 1234
                }),
                "{status} {syncing}"
            );
        }
        let primary = info(
            "master",
            &[
                "connected_slaves:2",
                "master_replid:094822c8684a996779cf047862a15da9f92f3bc9",
                "master_replid2:0000000000000000000000000000000000000000",
                "master_repl_offset:99",
            ],
        );
        assert_eq!(
            parse(&primary),
            Some(Replication::Primary {
                id: "094822c8684a996779cf047862a15da9f92f3bc9".to_owned(),
                offset: 99
            })
        );
        // RESP3 answers a verbatim string.
        let verbatim = Value::VerbatimString {
            format: redis::VerbatimFormat::Text,
            text: "role:master\r\nmaster_replid:abc\r\nmaster_repl_offset:7\r\n".to_owned(),
        };
        assert_eq!(
            parse(&verbatim),
            Some(Replication::Primary {
                id: "abc".to_owned(),
                offset: 7
            })
        );
        for not_info in [
            bulk("OK"),
            Value::Nil,
            info("sentinel", &["master_replid:x"]),
        ] {
            assert_eq!(parse(&not_info), None);
        }
    }
}
