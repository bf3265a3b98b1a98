//! `rediss://` against a redis-server with a certificate from a CA made in
//! the test: the right CA connects; a wrong CA or host name is refused, with
//! no fallback to plain text.

use std::path::PathBuf;

use lockstep::lockstep;
use lockstep::store::{RedisStore, Store};
use lockstep_suite::{RedisServer, wait_for_switch};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A CA and a server certificate for `localhost` signed by it, as PEM files
/// in `dir`; returns (ca, cert, key) paths.
fn certificates(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[lockstep(tick = "1s", store = "redis")]
struct Secure {
    #[lockstep(default = 1)]
    level: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_connects_with_the_right_ca_and_refuses_a_wrong_one_or_host() {
    let dir = std::env::temp_dir().join(format!("lockstep-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = certificates(&dir, "good");
    let (other_ca, _, _) = certificates(&dir, "other");
    let (server, tls_port) = RedisServer::start_tls(&cert, &key, &ca);
    let url = format!("rediss://localhost:{tls_port}");

    // The right CA: a registry runs over TLS.
    let store = RedisStore::open_with_ca(&url, Some(std::fs::read(&ca).unwrap())).unwrap();
    SECURE.builder().store(store).start().await.unwrap();
    let at = SECURE.set(Secure::LEVEL, 2).await.unwrap();
    wait_for_switch("secure.level", at, 2, || SECURE.level()).await;
    assert_eq!(SECURE.status().failed_fetches, 0);

    // A CA that did not sign the server's certificate: refused.
    let wrong_ca = RedisStore::open_with_ca(&url, Some(std::fs::read(&other_ca).unwrap())).unwrap();
    let err = wrong_ca.fetch("secure", &["level"]).await.unwrap_err();
    println!("wrong CA: {err}");
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    // Retrying cannot fix it: a misconfiguration, not an outage.
    assert!(
        matches!(err, lockstep::Error::Misconfigured { .. }),
        "{err}"
    );
    // The system's roots do not know the test CA either.
    let system = RedisStore::open(&url).unwrap();
    assert!(system.fetch("secure", &["level"]).await.is_err());

    // The right CA but another name than the certificate's: refused.
    let by_ip = format!("rediss://127.0.0.1:{tls_port}");
    let wrong_host = RedisStore::open_with_ca(&by_ip, Some(std::fs::read(&ca).unwrap())).unwrap();
    let err = wrong_host.fetch("secure", &["level"]).await.unwrap_err();
    println!("wrong host: {err}");
    assert!(err.to_string().contains("not valid for name"), "{err}");
    assert!(
        matches!(err, lockstep::Error::Misconfigured { .. }),
        "{err}"
    );

    // Plain text to the TLS port is not understood, and a TLS client never
    // talks plain text: the server saw only the successful client's commands.
    let plain = RedisStore::open(&format!("redis://localhost:{tls_port}")).unwrap();
    assert!(plain.fetch("secure", &["level"]).await.is_err());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
