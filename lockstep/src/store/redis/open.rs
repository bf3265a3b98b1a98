//! Opening a store from its URL: one server (`redis://`, `rediss://` with
//! TLS, `redis+unix://`) or a Redis Cluster (`redis+cluster://`).

use std::sync::Arc;
use std::time::Duration;

use redis::Client;
use redis::aio::ConnectionManagerConfig;

use super::connection::{Connector, SingleConnector};
use super::errors::message;
use super::replicas::{Node, Replicas};
use crate::error::Error;
use crate::store::url::{StoreUrl, percent_decode};

/// The connectors for `url`: the primary's (or the only server's), the
/// one its commits go through, and the replicas, with `?replicas=`
/// (the commits then have a connection of their own). Does not connect.
pub(super) fn connectors(
    url: &str,
    shown: &str,
    ca_pem: Option<Vec<u8>>,
) -> Result<(Connector, Connector, Option<Replicas>), Error> {
    let parsed = StoreUrl::parse(url);
    let split = replicated(&parsed).map_err(|reason| Error::Url {
        url: shown.to_owned(),
        reason,
    })?;
    let Some(split) = split else {
        let only = connector(url, shown, ca_pem)?;
        return Ok((only.clone(), only, None));
    };
    let primary = connector(&split.primary, shown, ca_pem.clone())?;
    let writes = connector(&split.primary, shown, ca_pem.clone())?;
    let nodes = split
        .replicas
        .into_iter()
        .map(|(name, replica_url)| {
            let connector = connector(&replica_url, shown, ca_pem.clone())?;
            Ok(Node::new(name, connector))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let replicas = Replicas::new(nodes, primary.clone());
    Ok((primary, writes, Some(replicas)))
}

/// The CA certificates named by `LOCKSTEP_CA_FILE`, for `rediss` URLs.
pub(super) fn ca_from_env(url: &str, shown: &str) -> Result<Option<Vec<u8>>, Error> {
    match std::env::var_os("LOCKSTEP_CA_FILE") {
        Some(path) if url.starts_with("rediss") => {
            Ok(Some(std::fs::read(&path).map_err(|e| Error::Url {
                url: shown.to_owned(),
                reason: format!("cannot read LOCKSTEP_CA_FILE {}: {e}", path.display()),
            })?))
        }
        _ => Ok(None),
    }
}

/// The connector for `url` (shown as `shown`), trusting the roots of
/// `ca_pem` if given. Does not connect.
fn connector(url: &str, shown: &str, ca_pem: Option<Vec<u8>>) -> Result<Connector, Error> {
    if url.starts_with("rediss://") || url.starts_with("rediss+cluster://") {
        tls(url, shown)?;
    }
    if url.contains("+cluster://") {
        return cluster(url, shown);
    }
    let refused = |e: redis::RedisError| Error::Url {
        url: shown.to_owned(),
        reason: format!(
            "{}; expected redis://[user[:password]@]host[:port][/db], rediss://… for TLS, \
             or redis+unix:///path/to/socket[?user=…&pass=…&db=…]",
            message(&e)
        ),
    };
    let client = match ca_pem {
        #[cfg(feature = "tls")]
        Some(pem) => Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            },
        ),
        _ => Client::open(url),
    }
    .map_err(refused)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
        .set_number_of_retries(2);
    let single = SingleConnector::new(client, config).map_err(|e| Error::Store {
        store: shown.to_owned(),
        message: message(&e),
    })?;
    Ok(Connector::Single(Arc::new(single)))
}

#[cfg(feature = "cluster")]
fn cluster(url: &str, shown: &str) -> Result<Connector, Error> {
    let refused = |reason: String| Error::Url {
        url: shown.to_owned(),
        reason,
    };
    let nodes = cluster_nodes(url).ok_or_else(|| {
        refused("expected redis+cluster://[user:password@]host:port[,host:port…]".to_owned())
    })?;
    let client = redis::cluster::ClusterClient::builder(nodes)
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| refused(message(&e)))?;
    Ok(Connector::Cluster(Arc::new(
        super::connection::ClusterConnector {
            client,
            connection: tokio::sync::OnceCell::new(),
        },
    )))
}

#[cfg(not(feature = "cluster"))]
fn cluster(_url: &str, shown: &str) -> Result<Connector, Error> {
    Err(Error::Url {
        url: shown.to_owned(),
        reason: "redis+cluster:// needs the cargo feature `cluster` of lockstep".to_owned(),
    })
}

#[cfg(any(feature = "cluster", test))]
/// The node URLs of `redis+cluster://[user:pass@]host:port,host:port[/…]`
/// (or `rediss+cluster://`), each with the shared credentials.
pub fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.strip_suffix("+cluster")?;
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|host| format!("{scheme}://{userinfo}{host}{tail}"))
        .collect();
    (!nodes.is_empty()).then_some(nodes)
}

/// Makes TLS work out of the box: installs the ring provider as the
/// process's rustls default, unless one is installed already.
#[cfg(feature = "tls")]
fn tls(_url: &str, _shown: &str) -> Result<(), Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(())
}

#[cfg(not(feature = "tls"))]
fn tls(_url: &str, shown: &str) -> Result<(), Error> {
    Err(Error::Url {
        url: shown.to_owned(),
        reason: "rediss:// needs the cargo feature `tls` of lockstep".to_owned(),
    })
}

/// A Redis URL with `?replicas=host:port,host:port`, split: the primary's
/// URL (without the `replicas` parameter) and one URL per replica, each
/// with the primary's scheme, credentials, database and other parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Replicated {
    /// The primary's URL, without `replicas=`.
    pub(super) primary: String,
    /// `(host:port, URL)` of each replica, in the order written.
    pub(super) replicas: Vec<(String, String)>,
}

/// What `?replicas=` accepts, for error messages.
const REPLICAS_FORM: &str = "expected redis://[user[:password]@]primary[:port][/db]?replicas=host:port,host:port \
     (or rediss://…): one or more distinct replicas, each a host name or IPv4 address and a port";

/// The primary and replicas of `url` if its query has `replicas=`; `None`
/// if it has none; else why the list is refused, naming what is accepted.
/// The replicas share the primary's credentials (never shown: see
/// [`StoreUrl::redacted`]).
fn replicated(url: &StoreUrl) -> Result<Option<Replicated>, String> {
    let Some(query) = url.query() else {
        return Ok(None);
    };
    let (mut list, mut rest) = (None, Vec::new());
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((key, value)) if key.eq_ignore_ascii_case("replicas") => {
                if list.replace(value).is_some() {
                    return Err(format!("`replicas=` is given twice; {REPLICAS_FORM}"));
                }
            }
            _ if pair.eq_ignore_ascii_case("replicas") => {
                return Err(format!("`replicas` has no list; {REPLICAS_FORM}"));
            }
            _ => rest.push(pair),
        }
    }
    let Some(list) = list else {
        return Ok(None);
    };
    let scheme = url.scheme().unwrap_or_default();
    if !matches!(scheme, "redis" | "rediss") {
        return Err(format!(
            "`replicas=` is for redis:// and rediss:// URLs, not {scheme}:// (a Redis Cluster's \
             client picks replicas by itself, and lockstep could not check their link per \
             fetch); {REPLICAS_FORM}"
        ));
    }
    let default_port = |host: &str| {
        if host.rsplit_once(':').is_some() {
            host.to_owned()
        } else {
            format!("{host}:6379")
        }
    };
    let primary_host = default_port(url.host());
    let mut replicas: Vec<(String, String)> = Vec::new();
    let user_info = match (url.user(), url.password()) {
        (Some(user), Some(password)) => format!("{user}:{password}@"),
        (Some(user), None) => format!("{user}@"),
        (None, Some(password)) => format!(":{password}@"),
        (None, None) => String::new(),
    };
    let tail = if rest.is_empty() {
        url.path().to_owned()
    } else {
        format!("{}?{}", url.path(), rest.join("&"))
    };
    for item in list.split(',') {
        let item = percent_decode(item);
        if item.is_empty() {
            return Err(format!(
                "the list of replicas has an empty item; {REPLICAS_FORM}"
            ));
        }
        let Some((host, port)) = item.rsplit_once(':') else {
            return Err(format!("replica `{item}` has no port; {REPLICAS_FORM}"));
        };
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
        if !host_ok {
            return Err(format!(
                "replica `{item}`: `{host}` is not a host name; {REPLICAS_FORM}"
            ));
        }
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(format!(
                "replica `{item}`: `{port}` is not a port (1 to 65535); {REPLICAS_FORM}"
            ));
        }
        if item == primary_host {
            return Err(format!(
                "replica `{item}` is the primary itself; {REPLICAS_FORM}"
            ));
        }
        if replicas.iter().any(|(known, _)| *known == item) {
            return Err(format!("replica `{item}` is listed twice; {REPLICAS_FORM}"));
        }
        let replica_url = format!("{scheme}://{user_info}{item}{tail}");
        replicas.push((item, replica_url));
    }
    let primary = format!("{scheme}://{user_info}{}{tail}", url.host());
    Ok(Some(Replicated { primary, replicas }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_every_node() {
        assert_eq!(
            cluster_nodes("redis+cluster://u:p@h1:7000,h2:7001/0").unwrap(),
            vec!["redis://u:p@h1:7000/0", "redis://u:p@h2:7001/0"]
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://h1:7000").unwrap(),
            vec!["rediss://h1:7000"]
        );
        assert!(cluster_nodes("redis://h1").is_none());
        assert!(cluster_nodes("redis+cluster://").is_none());
    }

    #[test]
    fn replicas_share_the_primarys_credentials_database_and_parameters() {
        let url = StoreUrl::parse("redis://app:s3cret@primary:6379/2?replicas=r1:6380,r2:6381");
        let split = replicated(&url).unwrap().unwrap();
        assert_eq!(split.primary, "redis://app:s3cret@primary:6379/2");
        assert_eq!(
            split.replicas,
            [
                (
                    "r1:6380".to_owned(),
                    "redis://app:s3cret@r1:6380/2".to_owned()
                ),
                (
                    "r2:6381".to_owned(),
                    "redis://app:s3cret@r2:6381/2".to_owned()
                ),
            ]
        );
        // Shown, the replicas stay readable and the password goes.
        assert_eq!(
            url.redacted(),
            "redis://app:***@primary:6379/2?replicas=r1:6380,r2:6381"
        );
        let tls = StoreUrl::parse("rediss://:tok3n@p?protocol=resp3&replicas=10.0.0.2:6379");
        let split = replicated(&tls).unwrap().unwrap();
        assert_eq!(split.primary, "rediss://:tok3n@p?protocol=resp3");
        assert_eq!(
            split.replicas[0].1,
            "rediss://:tok3n@10.0.0.2:6379?protocol=resp3"
        );
        assert_eq!(
            tls.redacted(),
            "rediss://:***@p?protocol=resp3&replicas=10.0.0.2:6379"
        );
        assert_eq!(replicated(&StoreUrl::parse("redis://h:1/0")).unwrap(), None);
        assert_eq!(
            replicated(&StoreUrl::parse("redis://h:1/0?protocol=resp3")).unwrap(),
            None
        );
    }

    #[test]
    fn a_bad_list_of_replicas_is_refused_saying_what_is_accepted() {
        for (url, says) in [
            ("redis://p:1?replicas=", "empty item"),
            ("redis://p:1?replicas=a:2,,b:3", "empty item"),
            ("redis://p:1?replicas", "has no list"),
            ("redis://p:1?replicas=a", "`a` has no port"),
            ("redis://p:1?replicas=a:x", "`x` is not a port"),
            ("redis://p:1?replicas=a:0", "`0` is not a port"),
            ("redis://p:1?replicas=a:70000", "`70000` is not a port"),
            ("redis://p:1?replicas=u%40a:2", "`u@a` is not a host name"),
            ("redis://p:1?replicas=a/b:2", "`a/b` is not a host name"),
            ("redis://p:1?replicas=p:1", "is the primary itself"),
            ("redis://p?replicas=p:6379", "is the primary itself"),
            ("redis://p:1?replicas=a:2,a:2", "listed twice"),
            ("redis://p:1?replicas=a:2&replicas=b:2", "given twice"),
            (
                "redis+cluster://p:1,q:2?replicas=a:2",
                "not redis+cluster://",
            ),
            ("redis+unix:///s.sock?replicas=a:2", "not redis+unix://"),
        ] {
            let reason = replicated(&StoreUrl::parse(url)).unwrap_err();
            assert!(reason.contains(says), "{url}: {reason}");
            assert!(
                reason.contains("expected redis://[user[:password]@]primary[:port][/db]?replicas="),
                "{url}: {reason}"
            );
        }
    }

    #[test]
    fn a_refused_list_of_replicas_never_shows_the_password() {
        let Err(e) = crate::store::open("redis://u:Sekr3t@p:1?replicas=a:x") else {
            panic!("a port that is not one was accepted");
        };
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("Sekr3t"), "{shown}");
        assert!(shown.contains("redis://u:***@p:1?replicas=a:x"), "{shown}");
        assert!(shown.contains("`x` is not a port"), "{shown}");
    }
}
