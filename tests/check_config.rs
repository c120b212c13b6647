//! `proxy check-config`: exit status and messages for good and bad files, and the
//! example configurations in dist/examples. No root.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use lab::certs::{self, KeyType};
use proxy::config::backend_tls::TrustAnchors;

fn check(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("check-config")
        .arg(path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn config(cert: &str, key: &str, extra: &str) -> String {
    format!(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8443"
pool = "app"
{extra}
[listener.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]

[[pool]]
name = "app"
backends = [{{ address = "127.0.0.1:8080" }}]
"#
    )
}

#[test]
fn check_config_reports_file_line_key_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let ec = certs::write(dir.path(), "ec", KeyType::EcdsaP256, "a.test", &["a.test"]);
    let other = certs::write(
        dir.path(),
        "other",
        KeyType::EcdsaP256,
        "b.test",
        &["b.test"],
    );
    let file = dir.path().join("proxy.toml");
    let (cert, key) = (ec.cert.display().to_string(), ec.key.display().to_string());
    let shown = file.display().to_string();

    std::fs::write(&file, config(&cert, &key, "")).unwrap();
    let (ok, text) = check(&file);
    assert!(ok, "{text}");
    assert_eq!(
        text,
        format!("{shown}: OK\nauto-blocking: off (no [autoblock] section)\n")
    );

    let cases = [
        (
            config(&cert, &key, "max_conections = 10"),
            format!("{shown}:5:1: `listener[0].max_conections`: unknown field `max_conections`"),
        ),
        (
            config(&cert, &key, "max_per_source = -1"),
            format!("{shown}:5:18: `listener[0].max_per_source`: invalid value"),
        ),
        (
            config(&format!("{cert}.missing"), &key, ""),
            format!(
                "{shown}:7:17: `listener[0].tls.certificates[0]`: cannot read \"{cert}.missing\": No such file or directory"
            ),
        ),
        (
            config(&key, &key, ""),
            format!("`listener[0].tls.certificates[0]`: \"{key}\" holds no PEM certificate"),
        ),
        (
            config(&cert, &other.key.display().to_string(), ""),
            "does not belong to the certificate".to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[xdp]\ninterfaces = [\"eth0\"]\nblocklist = [\"10.0.0.1/8\"]\n",
            "\"10.0.0.1/8\" has host bits set: write 10.0.0.0/8 for the network or 10.0.0.1/32"
                .to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[listener.tls.client_auth]\nca = \"/nonexistent/ca.pem\"\n",
            "`listener[0].tls.client_auth.ca`: cannot read \"/nonexistent/ca.pem\"".to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[bgp]\nlocal_as = 65001\nrouter_id = \"10.0.0.1\"\n\
                   [[bgp.peer]]\naddress = \"10.0.0.254\"\nas = 65000\n\
                   [[bgp.vip]]\naddress = \"192.0.2.10\"\nlisteners = [\"webb\"]\n",
            "`bgp.vip[0].listeners[0]`: no [[listener]] named \"webb\" (listeners: [\"web\"])"
                .to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[bgp]\nlocal_as = 65001\nrouter_id = \"10.0.0.1\"\n\
                   [[bgp.peer]]\naddress = \"10.0.0.254\"\nas = 65000\n\
                   [[bgp.vip]]\naddress = \"2001:db8::10\"\nlisteners = [\"web\"]\n",
            "`bgp.vip[0].address`: 2001:db8::10: no IPv6 peer to announce it to".to_string(),
        ),
        (
            config(&cert, &key, "syn_cookies = \"sometimes\""),
            format!("{shown}:5:15: `listener[0].syn_cookies`: unknown variant `sometimes`"),
        ),
        (
            config(&cert, &key, "syn_cookies = \"on\""),
            "`listener[0].syn_cookies`: SYN cookies are answered by the XDP program: add an [xdp] section"
                .to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[xdp]\ninterfaces = [\"eth0\"]\n[xdp.service_filter]\nallow = [\"22/sctp\"]\n",
            "\"22/sctp\": protocol \"sctp\" is not tcp or udp".to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[xdp]\ninterfaces = [\"eth0\"]\n[xdp.service_filter]\nallow = [\"0/tcp\"]\n",
            "\"0/tcp\": \"0\" is not a port (1-65535)".to_string(),
        ),
        (
            config(&cert, &key, "")
                + "[xdp]\ninterfaces = [\"eth0\"]\nsyn_cookies = { auto_on_syn_per_second = 0 }\n",
            "`xdp.syn_cookies.auto_on_syn_per_second`: must be at least 1".to_string(),
        ),
        (
            config(&cert, &key, "").replace("name = \"web\"", "name = \"we\\\"b\""),
            format!("{shown}:2:1: `listener[0].name`: \"we\\\"b\" is not a valid name"),
        ),
    ];
    for (text_in, want) in cases {
        std::fs::write(&file, text_in).unwrap();
        let (ok, text) = check(&file);
        assert!(!ok, "accepted:\n{text}");
        assert!(text.contains(&want), "want {want:?} in:\n{text}");
    }
}

/// The example configurations shipped in `dist/examples/`.
fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/examples")
}

/// Every `*.toml` in `dist/examples/`, by file name.
fn example_files() -> BTreeSet<String> {
    std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect()
}

/// The TLS files a configuration reads: certificates with their keys and the names
/// to make them for, and CA certificates.
#[derive(Default)]
struct TlsFiles {
    certificates: Vec<(PathBuf, PathBuf, Vec<String>)>,
    cas: BTreeSet<PathBuf>,
}

impl TlsFiles {
    fn of(config: &proxy::config::Config) -> TlsFiles {
        let mut files = TlsFiles::default();
        for tls in config.listeners.iter().filter_map(|l| l.tls.as_ref()) {
            let auths = tls
                .certificates
                .iter()
                .filter_map(|c| c.client_auth.as_ref());
            files
                .cas
                .extend(tls.client_auth.iter().chain(auths).map(|a| a.ca.clone()));
            for c in &tls.certificates {
                files.add_certificate(&c.cert, &c.key, &c.names);
            }
        }
        for tls in config.pools.iter().filter_map(|p| p.tls.as_ref()) {
            if let Some(TrustAnchors::File(ca)) = &tls.ca {
                files.cas.insert(ca.clone());
            }
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                files.add_certificate(cert, key, &[]);
            }
        }
        if let Some(tls) = config.fleet_policy().and_then(|p| p.tls.as_ref()) {
            files.cas.insert(tls.ca.clone());
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                files.add_certificate(cert, key, &[]);
            }
        }
        files
    }

    /// A certificate for `names`, else for the name of the directory it is in
    /// (`certs/www.example.com/fullchain.pem` serves www.example.com).
    fn add_certificate(&mut self, cert: &Path, key: &Path, names: &[String]) {
        let names = match names.is_empty() {
            false => names.to_vec(),
            true => {
                let dir = cert.parent().and_then(Path::file_name).unwrap();
                vec![dir.to_string_lossy().into_owned()]
            }
        };
        self.certificates
            .push((cert.to_owned(), key.to_owned(), names));
    }

    /// Writes every file (ECDSA keys, self-signed certificates, one CA per file). CRLs
    /// and OCSP responses are not made: an example that names one needs them added here.
    fn write(&self) {
        let scratch = tempfile::tempdir().unwrap();
        let place = |from: &Path, to: &Path| {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from, to).unwrap();
        };
        for (cert, key, names) in &self.certificates {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let made = certs::write(scratch.path(), "c", KeyType::EcdsaP256, names[0], &names);
            place(&made.cert, cert);
            place(&made.key, key);
        }
        for ca in &self.cas {
            let made = certs::Ca::new(scratch.path(), "ca", "Example CA").unwrap();
            place(&made.cert, ca);
        }
    }
}

/// Every example passes `proxy check-config`, with the certificates, keys and CAs it
/// names under /etc/proxy/ generated in a scratch directory (the prefix rewritten).
#[test]
fn dist_examples_pass_check_config() {
    let examples = example_files();
    assert!(!examples.is_empty(), "no examples in {:?}", examples_dir());
    let mut failures = Vec::new();
    for name in examples {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(examples_dir().join(&name))
            .unwrap()
            .replace("/etc/proxy/", &format!("{}/", dir.path().display()));
        match proxy::config::parse(&text) {
            Ok(config) => TlsFiles::of(&config).write(),
            Err(e) => {
                failures.push(format!("dist/examples/{name}: {e}"));
                continue;
            }
        }
        let file = dir.path().join(&name);
        std::fs::write(&file, &text).unwrap();
        let (ok, output) = check(&file);
        if !ok || !output.contains(": OK\n") {
            failures.push(format!(
                "dist/examples/{name} fails check-config:\n{output}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// dist/examples/README.md links every example and only files that exist.
#[test]
fn dist_examples_readme_lists_every_example() {
    let readme = std::fs::read_to_string(examples_dir().join("README.md")).unwrap();
    let links: Vec<&str> = readme
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|target| !target.contains("://"))
        .collect();
    for target in &links {
        let path = examples_dir().join(target.split('#').next().unwrap());
        assert!(
            path.exists(),
            "README.md links {target}, which does not exist"
        );
    }
    let listed: BTreeSet<String> = links
        .iter()
        .filter(|target| target.ends_with(".toml"))
        .map(|target| target.to_string())
        .collect();
    assert_eq!(
        listed,
        example_files(),
        "dist/examples/README.md must link each example (and no other .toml)"
    );
}
