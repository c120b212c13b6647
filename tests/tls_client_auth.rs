//! Client certificates (mutual TLS) with real clients (`openssl s_client -cert`,
//! `curl --cert`): good, expired, wrong-CA and revoked certificates in required and
//! optional mode, failures counted by reason, and the verified identity passed to the
//! backend in PROXY v2 SSL TLVs, decoded by an independent decoder (the PyPI
//! `proxy-protocol` package). Needs root.

use std::time::Duration;

use lab::certs::{Ca, CertFiles, KeyType};
use lab::config::*;
use lab::site::{Lab, LabOptions, s_client_text};
use proxy::api::{HandshakeFailure, Stats};
use serde_json::Value;

const REQUIRED: u16 = 8443;
const OPTIONAL: u16 = 8444;
/// A listener where only `admin.test` asks for client certificates.
const PER_NAME: u16 = 8445;
/// The decoding backend's port (on be0).
const DECODER_PORT: u16 = 9000;

/// A backend that decodes each connection's PROXY v2 header with the PyPI
/// `proxy-protocol` package, appends what it found as a JSON line, and answers.
const DECODER: &str = r#"
import json, socket, sys
from proxyprotocol.v2 import ProxyProtocolV2
port, out = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(64)
pp = ProxyProtocolV2()
while True:
    c, _ = s.accept()
    data = b""
    while len(data) < 16:
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    if len(data) < 16:
        c.close()
        continue
    total = 16 + int.from_bytes(data[14:16], "big")
    while len(data) < total:
        data += c.recv(4096)
    result = pp.unpack(data[:total])
    ssl = result.tlv.ssl
    record = {"has_ssl": ssl.has_ssl, "verified": ssl.verified,
              "cert_conn": ssl.has_cert_conn, "cert_sess": ssl.has_cert_sess,
              "version": ssl.version, "cn": ssl.cn, "cipher": ssl.cipher,
              "sig_alg": ssl.sig_alg, "key_alg": ssl.key_alg}
    with open(out, "a") as f:
        f.write(json.dumps(record) + "\n")
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    c.close()
"#;

struct Site {
    lab: Lab,
    server_ca: String,
    clients: Clients,
    decoded: String,
    ca: Ca,
    crl: std::path::PathBuf,
    alice_serial: u64,
    revoked_serial: u64,
}

struct Clients {
    alice: CertFiles,
    expired: CertFiles,
    revoked: CertFiles,
    stranger: CertFiles,
}

fn site() -> Site {
    let mut lab = Lab::new(LabOptions {
        backends: 1,
        ..LabOptions::default()
    });
    let dir = lab.dir.path().to_path_buf();
    let server = lab.cert("site.test");
    let admin = lab.cert("admin.test");
    let server_ca = lab.path("server-ca.pem");
    let bundle = std::fs::read_to_string(&server.cert).unwrap()
        + &std::fs::read_to_string(&admin.cert).unwrap();
    std::fs::write(&server_ca, bundle).unwrap();
    let mut ca = Ca::new(&dir, "client-ca", "Lab Client CA").unwrap();
    let (alice, alice_serial) = ca
        .client("alice", "alice", KeyType::EcdsaP256, (2020, 2099))
        .unwrap();
    let (expired, _) = ca
        .client("expired", "bob", KeyType::EcdsaP256, (2020, 2021))
        .unwrap();
    let (revoked, serial) = ca
        .client("revoked", "carol", KeyType::Rsa2048, (2020, 2099))
        .unwrap();
    let crl = ca.crl("client-crl", &[serial]).unwrap();
    let mut other = Ca::new(&dir, "other-ca", "Someone Else's CA").unwrap();
    let (stranger, _) = other
        .client("stranger", "mallory", KeyType::EcdsaP256, (2020, 2099))
        .unwrap();

    let script = lab.path("decoder.py");
    std::fs::write(&script, DECODER).unwrap();
    let decoded = lab.path("decoded.jsonl");
    let backend = lab
        .topo
        .host(2)
        .ns
        .spawn(&format!("python3 {script} {DECODER_PORT} {decoded}"));
    std::mem::forget(backend); // stopped with its namespace
    lab.topo.host(2).ns.wait_listening(&[DECODER_PORT]).unwrap();

    let lb = lab.lb_ip().to_string();
    let auth = |mode: ClientAuthMode| ClientAuth {
        mode,
        crl: vec![crl.clone()],
        ..ClientAuth::new(&ca.cert)
    };
    let decoder = format!("{}:{DECODER_PORT}", lab.topo.host(2).ipv4);
    let config = Config::new()
        .with_listener(
            Listener::new("required", addr(format!("{lb}:{REQUIRED}")), "decoder")
                .tls(tls(&server).client_auth(auth(ClientAuthMode::Required))),
        )
        .with_listener(
            Listener::new("optional", addr(format!("{lb}:{OPTIONAL}")), "decoder")
                .tls(tls(&server).client_auth(auth(ClientAuthMode::Optional))),
        )
        .with_listener(
            Listener::new("per_name", addr(format!("{lb}:{PER_NAME}")), "decoder").tls(
                ListenerTls::new(vec![
                    certificate(&server),
                    Certificate {
                        client_auth: Some(auth(ClientAuthMode::Required)),
                        ..certificate(&admin)
                    },
                ]),
            ),
        )
        .with_pool(
            Pool::new("decoder", addrs(&[decoder]))
                .proxy_protocol(ProxyProtocol::V2)
                .health(Health::off()),
        )
        .to_toml();
    lab.start_proxy(&config);
    Site {
        server_ca,
        lab,
        clients: Clients {
            alice,
            expired,
            revoked,
            stranger,
        },
        decoded,
        ca,
        crl,
        alice_serial,
        revoked_serial: serial,
    }
}

impl Site {
    /// `openssl s_client` to `port` with `cert` (or none); sends one line.
    fn s_client(&self, port: u16, cert: Option<&CertFiles>, extra: &str) -> String {
        self.s_client_to("site.test", port, cert, extra)
    }

    fn s_client_to(&self, name: &str, port: u16, cert: Option<&CertFiles>, extra: &str) -> String {
        let cert = cert.map_or(String::new(), |c| {
            format!("-cert {} -key {}", c.cert.display(), c.key.display())
        });
        let out = self.lab.client(&format!(
            "echo hello | timeout 10 openssl s_client -connect {}:{port} -servername {name} \
             -CAfile {} {cert} {extra} 2>&1",
            self.lab.lb_ip(),
            self.server_ca
        ));
        s_client_text(&out)
    }

    /// curl with `cert` to `port`; the body it got, if it got one.
    fn curl(&self, port: u16, cert: &CertFiles) -> Option<String> {
        let out = self.lab.client(&format!(
            "curl -sf --max-time 10 --http1.1 --cacert {} --cert {} --key {} \
             --resolve site.test:{port}:{} https://site.test:{port}/",
            self.server_ca,
            cert.cert.display(),
            cert.key.display(),
            self.lab.lb_ip()
        ));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn failures(&self, listener: &str, reason: HandshakeFailure) -> u64 {
        let stats: Stats = serde_json::from_str(&self.lab.stats_json()).unwrap();
        let l = stats.listeners.iter().find(|l| l.name == listener).unwrap();
        l.tls_handshake_failures.get(&reason).copied().unwrap_or(0)
    }

    /// The decoded header of the `n`-th backend connection (0-based), waiting for it.
    fn decoded(&self, n: usize) -> Value {
        let line = lab::wait_for("the decoder's record", Duration::from_secs(5), || {
            let text = std::fs::read_to_string(&self.decoded).ok()?;
            text.lines().nth(n).map(str::to_string)
        });
        serde_json::from_str(&line).unwrap()
    }
}

#[test]
fn client_certificates_are_verified_and_passed_to_the_backend() {
    let site = site();
    let c = &site.clients;

    // A good certificate: the request reaches the backend, which learns who it is.
    assert_eq!(site.curl(REQUIRED, &c.alice).as_deref(), Some("ok\n"));
    let got = site.decoded(0);
    assert_eq!(got["has_ssl"], true);
    assert_eq!(got["verified"], true, "{got}");
    assert_eq!(got["cert_conn"], true, "{got}");
    assert_eq!(got["cn"], "alice", "{got}");
    assert_eq!(got["version"], "TLSv1.3", "{got}");
    assert!(got["cipher"].as_str().unwrap().starts_with("TLS_"), "{got}");
    assert_eq!(got["sig_alg"], "ecdsa-with-SHA256", "{got}");
    assert_eq!(got["key_alg"], "id-ecPublicKey", "{got}");
    let tls12 = site.s_client(REQUIRED, Some(&c.alice), "-tls1_2");
    assert!(tls12.contains("Verify return code: 0 (ok)"), "{tls12}");
    assert_eq!(site.decoded(1)["version"], "TLSv1.2");

    // Required mode: no, expired, revoked and foreign certificates are refused, each
    // counted under its reason; nothing reaches the backend.
    for (who, cert, reason) in [
        ("no certificate", None, HandshakeFailure::ClientCertMissing),
        (
            "an expired one",
            Some(&c.expired),
            HandshakeFailure::ClientCertExpired,
        ),
        (
            "a revoked one",
            Some(&c.revoked),
            HandshakeFailure::ClientCertRevoked,
        ),
        (
            "another CA's",
            Some(&c.stranger),
            HandshakeFailure::ClientCertUnknownCa,
        ),
    ] {
        let before = site.failures("required", reason);
        site.s_client(REQUIRED, cert, "");
        if let Some(cert) = cert {
            assert_eq!(site.curl(REQUIRED, cert), None, "curl with {who}");
        }
        let after = site.failures("required", reason);
        assert!(
            after > before,
            "{who}: {} not counted ({before} → {after})",
            reason.label()
        );
    }
    assert!(
        std::fs::read_to_string(&site.decoded)
            .unwrap()
            .lines()
            .count()
            == 2
    );

    // Optional mode: without a certificate the connection goes through, unverified;
    // with one it is verified; a bad one is still refused.
    let anonymous = site.s_client(OPTIONAL, None, "");
    assert!(
        anonymous.contains("Verify return code: 0 (ok)"),
        "{anonymous}"
    );
    let got = site.decoded(2);
    assert_eq!(
        (got["has_ssl"].clone(), got["verified"].clone()),
        (true.into(), false.into()),
        "{got}"
    );
    assert!(got["cn"].is_null(), "{got}");
    assert_eq!(site.curl(OPTIONAL, &c.alice).as_deref(), Some("ok\n"));
    assert_eq!(site.decoded(3)["cn"], "alice");
    let before = site.failures("optional", HandshakeFailure::ClientCertExpired);
    assert_eq!(site.curl(OPTIONAL, &c.expired), None);
    assert!(site.failures("optional", HandshakeFailure::ClientCertExpired) > before);

    // The /metrics series carries the reasons too.
    let text = site
        .lab
        .lb()
        .ns
        .sh("curl -s http://127.0.0.1:9100/metrics | grep 'tls_handshake_failures_total' | grep client_cert_revoked");
    assert!(text.contains("listener=\"required\""), "{text}");

    // Per served name: site.test asks for no certificate, admin.test requires one.
    let records = |site: &Site| {
        std::fs::read_to_string(&site.decoded)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = records(&site);
    let open = site.s_client_to("site.test", PER_NAME, None, "");
    assert!(open.contains("Verify return code: 0 (ok)"), "{open}");
    assert_eq!(site.decoded(before)["verified"], false);
    let missing = site.failures("per_name", HandshakeFailure::ClientCertMissing);
    site.s_client_to("admin.test", PER_NAME, None, "");
    assert!(site.failures("per_name", HandshakeFailure::ClientCertMissing) > missing);
    let admin = site.s_client_to("admin.test", PER_NAME, Some(&c.alice), "");
    assert!(admin.contains("Verify return code: 0 (ok)"), "{admin}");
    assert_eq!(site.decoded(before + 1)["cn"], "alice");

    // A new CRL renamed over the old one (no SIGHUP): alice is refused from then on.
    let next = site
        .ca
        .crl("client-crl-next", &[site.revoked_serial, site.alice_serial])
        .unwrap();
    std::fs::rename(&next, &site.crl).unwrap();
    lab::wait_for("the new CRL to apply", Duration::from_secs(10), || {
        site.curl(REQUIRED, &c.alice).is_none().then_some(())
    });
    assert!(site.failures("required", HandshakeFailure::ClientCertRevoked) > 0);
}
