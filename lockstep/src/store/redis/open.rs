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
use crate::store::url::{StoreUrl, replicated};

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
            Ok(Node {
                name,
                connector: connector(&replica_url, shown, ca_pem.clone())?,
            })
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
}
