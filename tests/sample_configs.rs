//! The sample deployment files load: both site configs, the redirect file and the
//! redirector settings.

use std::path::PathBuf;

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sample-data")
        .join(name)
}

#[test]
fn sample_files_load() {
    let dir = tempfile::tempdir().unwrap();
    for (name, site, peer) in [
        (
            "primary.toml",
            "https://lic.example.com/",
            "https://dr.example.net/",
        ),
        (
            "dr.toml",
            "https://dr.example.net/",
            "https://lic.example.com/",
        ),
    ] {
        // The samples ship without secrets (they come from the environment); add one as the
        // operator would, since peer.url requires it.
        let text = std::fs::read_to_string(sample(name)).unwrap();
        let with_secret = text.replace(
            "[peer]\n",
            "[peer]\nsecret = \"sample-peer-secret-0123456789\"\n",
        );
        assert_ne!(with_secret, text, "{name} has a [peer] section");
        let path = dir.path().join(name);
        std::fs::write(&path, with_secret).unwrap();
        let (config, _) = keyward::config::Config::load(Some(&path)).unwrap();
        assert_eq!(config.site_url, site, "{name}");
        assert_eq!(config.peer.url, peer, "{name}");
        assert_eq!(
            config.redirect.url, "https://redirect.example.org/qlmredirect.xml",
            "{name}"
        );
        assert!(config.listen_addr().is_ok(), "{name}");
    }

    let xml = std::fs::read(sample("qlmredirect.xml")).unwrap();
    let (file, warnings) = keyward::redirect::parse(&xml).unwrap();
    assert_eq!(file.active_url.as_str(), "https://lic.example.com/");
    assert_eq!(file.dr_url.unwrap().as_str(), "https://dr.example.net/");
    assert!(warnings.is_empty(), "{warnings:?}");

    // The redirector reads its settings file: the sample names a file that does not exist here.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["redirector", "--config"])
        .arg(sample("redirector.toml"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/etc/keyward/qlmredirect.xml"), "{stderr}");
}
