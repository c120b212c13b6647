//! TLS files through their lifecycle, with real clients: OCSP responses (made by
//! `openssl ocsp` from a CA index) stapled and shown by `openssl s_client -status`, a
//! response for another certificate not stapled (counted) without breaking the
//! handshake, and certificates and OCSP responses reloaded when their files change:
//! replaced by rename as ACME clients do, and a broken write that leaves the old
//! certificate serving. Needs root.

use std::path::Path;
use std::time::Duration;

use lab::config::*;
use lab::site::{Lab, LabOptions, s_client_text};
use proxy::datapath::ocsp::{OcspProblem, check};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

const STAPLED: u16 = 8443;
const WRONG: u16 = 8444;

/// Runs a shell script in `dir` on the host (file work only, no network).
fn sh(dir: &Path, script: &str) {
    let out = std::process::Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An OpenSSL CA, `site` and `other` certificates it issued (chains `site.chain`,
/// `other.chain`), and a good OCSP response for each (`site.ocsp`, `other.ocsp`).
fn openssl_pki(dir: &Path) {
    sh(
        dir,
        r#"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
            -out ca.pem -subj /CN=OCSP-Test-CA -days 30 2>/dev/null
        expiry=$(date -u -d '+30 days' +%y%m%d%H%M%SZ)
        : > index.txt
        for name in site other; do
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $name.key \
                -out $name.csr -subj /CN=$name.test -addext subjectAltName=DNS:site.test 2>/dev/null
            openssl x509 -req -in $name.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
                -out $name.pem -days 30 -copy_extensions copy 2>/dev/null
            cat $name.pem ca.pem > $name.chain
            serial=$(openssl x509 -in $name.pem -noout -serial | cut -d= -f2)
            printf 'V\t%s\t\t%s\tunknown\t/CN=%s.test\n' $expiry $serial $name >> index.txt
        done
        for name in site other; do
            openssl ocsp -issuer ca.pem -cert $name.pem -no_nonce -reqout $name.req 2>/dev/null
            openssl ocsp -index index.txt -rsigner ca.pem -rkey ca.key -CA ca.pem \
                -reqin $name.req -respout $name.ocsp -ndays 7 2>/dev/null
        done
        "#,
    );
}

fn s_client(lab: &Lab, port: u16) -> String {
    let out = lab.client(&format!(
        "echo | timeout 10 openssl s_client -connect {}:{port} -servername site.test \
         -CAfile {} -status 2>&1",
        lab.lb_ip(),
        lab.path("ca.pem")
    ));
    s_client_text(&out)
}

fn metrics(lab: &Lab) -> String {
    lab.lb().ns.sh("curl -s http://127.0.0.1:9100/metrics")
}

#[test]
fn ocsp_responses_are_stapled_when_they_belong_and_reread_when_they_change() {
    let mut lab = Lab::new(LabOptions {
        backends: 1,
        ..LabOptions::default()
    });
    let dir = lab.dir.path().to_path_buf();
    openssl_pki(&dir);
    let p = |name: &str| lab.path(name);
    // `wrong.ocsp` starts as the other certificate's response.
    sh(&dir, "cp other.ocsp wrong.ocsp");
    let cert = |ocsp: &str| Certificate::new(p("site.chain"), p("site.key")).ocsp(p(ocsp));
    let lb = lab.lb_ip().to_string();
    let config = Config::new()
        .with_listener(
            Listener::new("stapled", addr(format!("{lb}:{STAPLED}")), "web")
                .tls(ListenerTls::new(vec![cert("site.ocsp")])),
        )
        .with_listener(
            Listener::new("wrong", addr(format!("{lb}:{WRONG}")), "web")
                .tls(ListenerTls::new(vec![cert("wrong.ocsp")])),
        )
        .with_pool(Pool::new("web", addrs(&lab.backend_addrs())))
        .to_toml();
    lab.start_proxy(&config);

    // The checks themselves, on openssl's responses: current, expired (a clock 30 days
    // on), not yet valid (a day back), about another certificate.
    let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(dir.join("site.chain"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let now = std::time::SystemTime::now();
    let day = Duration::from_secs(86_400);
    assert_eq!(check(&read("site.ocsp"), &chain, now), Ok(()));
    assert_eq!(
        check(&read("site.ocsp"), &chain, now + 30 * day),
        Err(OcspProblem::Expired)
    );
    assert_eq!(
        check(&read("site.ocsp"), &chain, now - day),
        Err(OcspProblem::NotYetValid)
    );
    assert_eq!(
        check(&read("other.ocsp"), &chain, now),
        Err(OcspProblem::WrongCertificate)
    );
    assert_eq!(check(b"not DER", &chain, now), Err(OcspProblem::Malformed));

    let good = s_client(&lab, STAPLED);
    assert!(good.contains("OCSP Response Status: successful"), "{good}");
    assert!(good.contains("Cert Status: good"), "{good}");
    assert!(good.contains("Verify return code: 0 (ok)"), "{good}");

    // A response about another certificate: no staple, the handshake still works.
    let none = s_client(&lab, WRONG);
    assert!(none.contains("OCSP response: no response sent"), "{none}");
    assert!(none.contains("Verify return code: 0 (ok)"), "{none}");
    let m = metrics(&lab);
    assert!(
        m.contains(
            "proxy_tls_ocsp_not_stapled_total{listener=\"wrong\",reason=\"wrong_certificate\"} 1"
        ),
        "{m}"
    );
    assert!(lab.proxy().log().contains("OCSP response not stapled"));

    // The right response renamed over the file: stapled after the automatic reload.
    sh(
        &dir,
        "cp site.ocsp wrong.ocsp.new && mv wrong.ocsp.new wrong.ocsp",
    );
    lab::wait_for(
        "the new OCSP response to be stapled",
        Duration::from_secs(10),
        || {
            s_client(&lab, WRONG)
                .contains("Cert Status: good")
                .then_some(())
        },
    );
}

#[test]
fn certificates_reload_when_replaced_by_rename_and_survive_a_broken_write() {
    let mut lab = Lab::new(LabOptions {
        backends: 1,
        ..LabOptions::default()
    });
    let dir = lab.dir.path().to_path_buf();
    openssl_pki(&dir);
    sh(&dir, "cp site.chain live.chain && cp site.key live.key");
    let lb = lab.lb_ip().to_string();
    let config = Config::new()
        .with_listener(
            Listener::new("tls", addr(format!("{lb}:{STAPLED}")), "web").tls(ListenerTls::new(
                vec![Certificate::new(
                    lab.path("live.chain"),
                    lab.path("live.key"),
                )],
            )),
        )
        .with_pool(Pool::new("web", addrs(&lab.backend_addrs())))
        .to_toml();
    lab.start_proxy(&config);
    let subject = |lab: &Lab| {
        let out = s_client(lab, STAPLED);
        out.lines()
            .find_map(|l| l.strip_prefix("subject="))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no subject in:\n{out}"))
    };
    assert_eq!(subject(&lab), "CN = site.test");

    // certbot style: new files written aside, then renamed into place (key first: the
    // reload between the two renames sees a mismatched pair, is rejected, and the
    // second rename's reload succeeds).
    sh(
        &dir,
        "cp other.key live.key.new && mv live.key.new live.key && \
         cp other.chain live.chain.new && mv live.chain.new live.chain",
    );
    lab::wait_for(
        "the renamed certificate to be served",
        Duration::from_secs(10),
        || (subject(&lab) == "CN = other.test").then_some(()),
    );

    // A broken write: the old certificate keeps serving; the log names the file.
    let rejected = lab.proxy().count_log("reload rejected");
    sh(&dir, "echo 'not a certificate' > live.chain");
    lab::wait_for("the rejected reload", Duration::from_secs(10), || {
        (lab.proxy().count_log("reload rejected") > rejected).then_some(())
    });
    let log = lab.proxy().log();
    let last = log
        .lines()
        .rev()
        .find(|l| l.contains("reload rejected"))
        .unwrap();
    assert!(
        last.contains("live.chain") && last.contains("holds no PEM certificate"),
        "{last}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        subject(&lab),
        "CN = other.test",
        "the old certificate still serves"
    );
}
