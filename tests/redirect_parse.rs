//! Parser, serializer and file-editing tests for the QLM redirect file.

use std::fs;
use std::time::{Duration, Instant};

use keyward::redirect::{
    FileError, MAX_REDIRECT_FILE_BYTES, RedirectError, RedirectFile, parse, same_site, set_active,
    show, write_atomically,
};
use url::Url;

fn url(value: &str) -> Url {
    Url::parse(value).unwrap()
}

struct ValidCase {
    name: &'static str,
    input: &'static [u8],
    active: &'static str,
    dr: Option<&'static str>,
    active_net_core: Option<&'static str>,
    dr_net_core: Option<&'static str>,
    warnings: usize,
}

const VALID_CASES: &[ValidCase] = &[
    ValidCase {
        name: "minimal",
        input: b"<QlmRedirection><activeUrl>https://lic.example.com/</activeUrl></QlmRedirection>",
        active: "https://lic.example.com/",
        dr: None,
        active_net_core: None,
        dr_net_core: None,
        warnings: 0,
    },
    ValidCase {
        name: "active and DR",
        input: b"<QlmRedirection><activeUrl>https://lic.example.com/</activeUrl>\
                 <drUrl>https://dr.example.net/</drUrl></QlmRedirection>",
        active: "https://lic.example.com/",
        dr: Some("https://dr.example.net/"),
        active_net_core: None,
        dr_net_core: None,
        warnings: 0,
    },
    ValidCase {
        name: "QLM v20 four elements",
        input: br#"<?xml version="1.0" encoding="utf-8"?>
<QlmRedirection xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <activeUrl>https://lic.example.com/qlmLicenseServer/qlmservice.asmx</activeUrl>
  <drUrl>https://dr.example.net/qlmLicenseServer/qlmservice.asmx</drUrl>
  <activeNetCoreUrl>https://lic.example.com/qlmweb/api</activeNetCoreUrl>
  <drNetCoreUrl>https://dr.example.net/qlmweb/api</drNetCoreUrl>
</QlmRedirection>
"#,
        active: "https://lic.example.com/qlmLicenseServer/qlmservice.asmx",
        dr: Some("https://dr.example.net/qlmLicenseServer/qlmservice.asmx"),
        active_net_core: Some("https://lic.example.com/qlmweb/api"),
        dr_net_core: Some("https://dr.example.net/qlmweb/api"),
        warnings: 0,
    },
    ValidCase {
        name: "UTF-8 byte order mark",
        input: b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\
                 <QlmRedirection><activeUrl>http://a.example/</activeUrl></QlmRedirection>",
        active: "http://a.example/",
        dr: None,
        active_net_core: None,
        dr_net_core: None,
        warnings: 0,
    },
    ValidCase {
        name: "declaration with standalone",
        input: b"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
                 <QlmRedirection><activeUrl>http://a.example/</activeUrl></QlmRedirection>",
        active: "http://a.example/",
        dr: None,
        active_net_core: None,
        dr_net_core: None,
        warnings: 0,
    },
    ValidCase {
        name: "comments everywhere",
        input: b"<!-- before --><QlmRedirection><!-- inside -->\
                 <activeUrl><!-- in value -->http://a.example/</activeUrl>\
                 </QlmRedirection><!-- after -->",
        active: "http://a.example/",
        dr: None,
        active_net_core: None,
        dr_net_core: None,
        warnings: 0,
    },
    ValidCase {
        name: "whitespace around values",
        input: b"\n\n  <QlmRedirection>\r\n\t<activeUrl>\n   http://a.example/path  \n</activeUrl>\
                 \r\n\t<drUrl> http://b.example/ </drUrl>\n</QlmRedirection>\n\n",
        active: "http://a.example/path",
        dr: Some("http://b.example/"),
        active_net_core: None,
        dr_net_core: None,
        warnings: 0,
    },
    ValidCase {
        name: "reverse element order",
        input: b"<QlmRedirection><drNetCoreUrl>https://d.example/n</drNetCoreUrl>\
                 <activeNetCoreUrl>https://a.example/n</activeNetCoreUrl>\
                 <drUrl>https://d.example/</drUrl><activeUrl>https://a.example/</activeUrl>\
                 </QlmRedirection>",
        active: "https://a.example/",
        dr: Some("https://d.example/"),
        active_net_core: Some("https://a.example/n"),
        dr_net_core: Some("https://d.example/n"),
        warnings: 0,
    },
    ValidCase {
        name: "unknown elements",
        input: b"<QlmRedirection><comment>moved <b>today</b></comment>\
                 <activeUrl>https://a.example/</activeUrl><version/></QlmRedirection>",
        active: "https://a.example/",
        dr: None,
        active_net_core: None,
        dr_net_core: None,
        warnings: 2,
    },
    ValidCase {
        name: "attributes inside unknown element",
        input: b"<QlmRedirection><note lang=\"en\"><p class=\"x\">hi</p></note>\
                 <activeUrl>https://a.example/</activeUrl></QlmRedirection>",
        active: "https://a.example/",
        dr: None,
        active_net_core: None,
        dr_net_core: None,
        warnings: 1,
    },
    ValidCase {
        name: "unknown attribute",
        input: b"<QlmRedirection><activeUrl lang=\"en\">https://a.example/</activeUrl>\
                 </QlmRedirection>",
        active: "https://a.example/",
        dr: None,
        active_net_core: None,
        dr_net_core: None,
        warnings: 1,
    },
    ValidCase {
        name: "empty optional elements",
        input: b"<QlmRedirection><activeUrl>https://a.example/</activeUrl><drUrl/>\
                 <activeNetCoreUrl xsi:nil=\"true\" /><drNetCoreUrl>  </drNetCoreUrl>\
                 </QlmRedirection>",
        active: "https://a.example/",
        dr: None,
        active_net_core: None,
        dr_net_core: None,
        warnings: 0,
    },
    ValidCase {
        name: "escaped query and CDATA",
        input: b"<QlmRedirection><activeUrl>https://a.example/s?x=1&amp;y=&#50;</activeUrl>\
                 <drUrl><![CDATA[https://d.example/s?x=1&y=2]]></drUrl></QlmRedirection>",
        active: "https://a.example/s?x=1&y=2",
        dr: Some("https://d.example/s?x=1&y=2"),
        active_net_core: None,
        dr_net_core: None,
        warnings: 0,
    },
];

#[test]
fn parse_accepts_valid_files() {
    for case in VALID_CASES {
        let (file, warnings) = match parse(case.input) {
            Ok(parsed) => parsed,
            Err(err) => panic!("case {:?}: rejected: {err}", case.name),
        };

        assert_eq!(
            file.active_url.as_str(),
            case.active,
            "case {:?}",
            case.name
        );
        assert_eq!(
            file.dr_url.as_ref().map(Url::as_str),
            case.dr,
            "case {:?}",
            case.name
        );
        assert_eq!(
            file.active_net_core_url.as_ref().map(Url::as_str),
            case.active_net_core,
            "case {:?}",
            case.name
        );
        assert_eq!(
            file.dr_net_core_url.as_ref().map(Url::as_str),
            case.dr_net_core,
            "case {:?}",
            case.name
        );
        assert_eq!(
            warnings.len(),
            case.warnings,
            "case {:?}: {warnings:?}",
            case.name
        );
    }
}

#[test]
fn parse_warning_names_unknown_element() {
    let input = b"<QlmRedirection><activeUrl>https://a.example/</activeUrl>\
                  <backupUrl>https://b.example/</backupUrl></QlmRedirection>";

    let (_, warnings) = parse(input).unwrap();

    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("<backupUrl>"), "{warnings:?}");
}

struct RejectCase {
    name: &'static str,
    input: &'static [u8],
    matches: fn(&RedirectError) -> bool,
    /// Text that the error message must contain.
    message: &'static str,
}

const REJECT_CASES: &[RejectCase] = &[
    RejectCase {
        name: "unclosed tag",
        input: b"<QlmRedirection><activeUrl>https://a.example/</activeUrl",
        matches: |err| matches!(err, RedirectError::Malformed { .. }),
        message: "line 1",
    },
    RejectCase {
        name: "mismatched end tag",
        input: b"<QlmRedirection>\n<activeUrl>https://a.example/</drUrl>\n</QlmRedirection>",
        matches: |err| matches!(err, RedirectError::Malformed { position, .. } if position.line == 2),
        message: "malformed XML at line 2",
    },
    RejectCase {
        name: "missing end of root",
        input: b"<QlmRedirection><activeUrl>https://a.example/</activeUrl>",
        matches: |err| {
            matches!(
                err,
                RedirectError::Malformed { .. } | RedirectError::UnexpectedEof { .. }
            )
        },
        message: "QlmRedirection",
    },
    RejectCase {
        name: "bare ampersand",
        input: b"<QlmRedirection><activeUrl>https://a.example/?a=1&b=2</activeUrl>\
                 </QlmRedirection>",
        matches: |err| {
            matches!(
                err,
                RedirectError::Malformed { .. } | RedirectError::UndefinedEntity { .. }
            )
        },
        message: "line 1",
    },
    RejectCase {
        name: "declaration after whitespace",
        input: b"\n<?xml version=\"1.0\"?><QlmRedirection><activeUrl>https://a.example/\
                 </activeUrl></QlmRedirection>",
        matches: |err| matches!(err, RedirectError::Malformed { .. }),
        message: "declaration",
    },
    RejectCase {
        name: "declared UTF-16 in a UTF-8 file",
        input: b"<?xml version=\"1.0\" encoding=\"utf-16\"?><QlmRedirection><activeUrl>\
                 https://a.example/</activeUrl></QlmRedirection>",
        matches: |err| matches!(err, RedirectError::Malformed { .. }),
        message: "\"utf-16\"",
    },
    RejectCase {
        name: "UTF-16 content",
        input: b"\xFF\xFE<\0Q\0",
        matches: |err| matches!(err, RedirectError::Utf16),
        message: "UTF-16",
    },
    RejectCase {
        name: "invalid UTF-8",
        input:
            b"<QlmRedirection><activeUrl>https://a.example/\xC3\x28</activeUrl></QlmRedirection>",
        matches: |err| matches!(err, RedirectError::NotUtf8 { offset: 45 }),
        message: "byte 45",
    },
    RejectCase {
        name: "empty document",
        input: b"  \n",
        matches: |err| matches!(err, RedirectError::MissingRoot { .. }),
        message: "no root element",
    },
    RejectCase {
        name: "wrong root element",
        input: b"<Redirect><activeUrl>https://a.example/</activeUrl></Redirect>",
        matches: |err| matches!(err, RedirectError::WrongRoot { found, .. } if found == "Redirect"),
        message: "<Redirect>",
    },
    RejectCase {
        name: "second root element",
        input: b"<QlmRedirection><activeUrl>https://a.example/</activeUrl></QlmRedirection>\
                 <QlmRedirection/>",
        matches: |err| matches!(err, RedirectError::ElementAfterRoot { .. }),
        message: "after the root element",
    },
    RejectCase {
        name: "text inside root",
        input: b"<QlmRedirection>oops<activeUrl>https://a.example/</activeUrl></QlmRedirection>",
        matches: |err| matches!(err, RedirectError::UnexpectedText { text, .. } if text == "oops"),
        message: "\"oops\"",
    },
    RejectCase {
        name: "missing activeUrl",
        input: b"<QlmRedirection><drUrl>https://d.example/</drUrl></QlmRedirection>",
        matches: |err| {
            matches!(
                err,
                RedirectError::MissingElement {
                    element: "activeUrl"
                }
            )
        },
        message: "<activeUrl> is missing",
    },
    RejectCase {
        name: "empty root",
        input: b"<QlmRedirection/>",
        matches: |err| {
            matches!(
                err,
                RedirectError::MissingElement {
                    element: "activeUrl"
                }
            )
        },
        message: "<activeUrl> is missing",
    },
    RejectCase {
        name: "empty activeUrl",
        input: b"<QlmRedirection><activeUrl>   </activeUrl></QlmRedirection>",
        matches: |err| {
            matches!(
                err,
                RedirectError::EmptyElement {
                    element: "activeUrl"
                }
            )
        },
        message: "<activeUrl> is empty",
    },
    RejectCase {
        name: "self-closing activeUrl",
        input: b"<QlmRedirection><activeUrl/></QlmRedirection>",
        matches: |err| {
            matches!(
                err,
                RedirectError::EmptyElement {
                    element: "activeUrl"
                }
            )
        },
        message: "<activeUrl> is empty",
    },
    RejectCase {
        name: "ftp scheme",
        input: b"<QlmRedirection><activeUrl>ftp://a.example/</activeUrl></QlmRedirection>",
        matches: |err| {
            matches!(err, RedirectError::UnsupportedScheme { element: "activeUrl", scheme, .. }
                if scheme == "ftp")
        },
        message: "\"ftp://a.example/\"",
    },
    RejectCase {
        name: "file scheme in drUrl",
        input: b"<QlmRedirection><activeUrl>https://a.example/</activeUrl>\
                 <drUrl>file:///etc/passwd</drUrl></QlmRedirection>",
        matches: |err| {
            matches!(
                err,
                RedirectError::UnsupportedScheme {
                    element: "drUrl",
                    ..
                }
            )
        },
        message: "<drUrl>",
    },
    RejectCase {
        name: "javascript scheme in NetCore URL",
        input: b"<QlmRedirection><activeUrl>https://a.example/</activeUrl>\
                 <activeNetCoreUrl>javascript:alert(1)</activeNetCoreUrl></QlmRedirection>",
        matches: |err| {
            matches!(
                err,
                RedirectError::UnsupportedScheme {
                    element: "activeNetCoreUrl",
                    ..
                }
            )
        },
        message: "javascript",
    },
    RejectCase {
        name: "relative URL",
        input: b"<QlmRedirection><activeUrl>/qlm/service</activeUrl></QlmRedirection>",
        matches: |err| {
            matches!(
                err,
                RedirectError::InvalidUrl {
                    element: "activeUrl",
                    ..
                }
            )
        },
        message: "\"/qlm/service\"",
    },
    RejectCase {
        name: "whitespace inside URL",
        input: b"<QlmRedirection><activeUrl>https://a.example/a b</activeUrl></QlmRedirection>",
        matches: |err| {
            matches!(
                err,
                RedirectError::InvalidUrl {
                    element: "activeUrl",
                    ..
                }
            )
        },
        message: "whitespace",
    },
    RejectCase {
        name: "duplicate activeUrl",
        input: b"<QlmRedirection><activeUrl>https://a.example/</activeUrl>\n\
                 <activeUrl>https://b.example/</activeUrl></QlmRedirection>",
        matches: |err| {
            matches!(err, RedirectError::DuplicateElement { element: "activeUrl", position }
                if position.line == 2)
        },
        message: "more than once",
    },
    RejectCase {
        name: "duplicate empty drUrl",
        input: b"<QlmRedirection><activeUrl>https://a.example/</activeUrl><drUrl/><drUrl/>\
                 </QlmRedirection>",
        matches: |err| {
            matches!(
                err,
                RedirectError::DuplicateElement {
                    element: "drUrl",
                    ..
                }
            )
        },
        message: "<drUrl>",
    },
    RejectCase {
        name: "nested element in URL",
        input: b"<QlmRedirection><activeUrl><url>https://a.example/</url></activeUrl>\
                 </QlmRedirection>",
        matches: |err| {
            matches!(err, RedirectError::NestedElement { element: "activeUrl", child }
                if child == "url")
        },
        message: "<url>",
    },
    RejectCase {
        name: "internal DOCTYPE",
        input: b"<?xml version=\"1.0\"?>\n<!DOCTYPE QlmRedirection>\n\
                 <QlmRedirection><activeUrl>https://a.example/</activeUrl></QlmRedirection>",
        matches: |err| matches!(err, RedirectError::Doctype { position } if position.line == 2),
        message: "DOCTYPE",
    },
    RejectCase {
        name: "undeclared entity",
        input: b"<QlmRedirection><activeUrl>https://&host;/</activeUrl></QlmRedirection>",
        matches: |err| matches!(err, RedirectError::UndefinedEntity { name, .. } if name == "host"),
        message: "&host;",
    },
];

#[test]
fn parse_rejects_invalid_files() {
    for case in REJECT_CASES {
        let err = match parse(case.input) {
            Ok(parsed) => panic!("case {:?}: accepted as {parsed:?}", case.name),
            Err(err) => err,
        };

        assert!(
            (case.matches)(&err),
            "case {:?}: wrong error kind {err:?}",
            case.name
        );
        let message = err.to_string();
        assert!(
            message.contains(case.message),
            "case {:?}: message {message:?} lacks {:?}",
            case.name,
            case.message
        );
    }
}

#[test]
fn parse_rejects_entity_bomb_quickly() {
    let mut bomb = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE QlmRedirection [\n");
    bomb.push_str("  <!ENTITY lol0 \"lol\">\n");
    for level in 1..10 {
        let previous = format!("&lol{};", level - 1);
        bomb.push_str(&format!(
            "  <!ENTITY lol{level} \"{}\">\n",
            previous.repeat(10)
        ));
    }
    bomb.push_str("]>\n<QlmRedirection><activeUrl>https://a.example/&lol9;</activeUrl>");
    bomb.push_str("</QlmRedirection>\n");

    let started = Instant::now();
    let result = parse(bomb.as_bytes());
    let elapsed = started.elapsed();

    assert!(
        matches!(result, Err(RedirectError::Doctype { .. })),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
}

#[test]
fn parse_rejects_external_entity() {
    let input = b"<?xml version=\"1.0\"?>\n\
                  <!DOCTYPE QlmRedirection [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n\
                  <QlmRedirection><activeUrl>https://a.example/&xxe;</activeUrl></QlmRedirection>";

    let started = Instant::now();
    let result = parse(input);

    assert!(
        matches!(result, Err(RedirectError::Doctype { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[test]
fn parse_rejects_external_dtd() {
    let input = b"<!DOCTYPE QlmRedirection SYSTEM \"http://127.0.0.1:9/qlm.dtd\">\
                  <QlmRedirection><activeUrl>https://a.example/</activeUrl></QlmRedirection>";

    let result = parse(input);

    assert!(
        matches!(result, Err(RedirectError::Doctype { .. })),
        "{result:?}"
    );
}

#[test]
fn parse_rejects_file_over_size_cap() {
    let head = "<QlmRedirection><activeUrl>https://a.example/</activeUrl><!-- ";
    let tail = " --></QlmRedirection>";
    let padding = "x".repeat(MAX_REDIRECT_FILE_BYTES - head.len() - tail.len() + 1);
    let input = format!("{head}{padding}{tail}");

    let err = parse(input.as_bytes()).unwrap_err();

    assert!(
        matches!(err, RedirectError::TooLarge { size, max }
            if size == MAX_REDIRECT_FILE_BYTES + 1 && max == MAX_REDIRECT_FILE_BYTES),
        "{err:?}"
    );
    assert!(err.to_string().contains("65537 bytes"), "{err}");
}

#[test]
fn parse_accepts_file_at_size_cap() {
    let head = "<QlmRedirection><activeUrl>https://a.example/</activeUrl><!-- ";
    let tail = " --></QlmRedirection>";
    let padding = "x".repeat(MAX_REDIRECT_FILE_BYTES - head.len() - tail.len());
    let input = format!("{head}{padding}{tail}");
    assert_eq!(input.len(), MAX_REDIRECT_FILE_BYTES);

    let result = parse(input.as_bytes());

    assert!(result.is_ok(), "{result:?}");
}

fn full_file() -> RedirectFile {
    RedirectFile {
        active_url: url("https://lic.example.com/qlm/service.asmx?site=a&mode=1"),
        dr_url: Some(url("https://dr.example.net/qlm/service.asmx")),
        active_net_core_url: Some(url("https://lic.example.com/api/")),
        dr_net_core_url: Some(url("http://dr.example.net:8080/api/")),
    }
}

#[test]
fn to_xml_round_trips() {
    let files = [
        full_file(),
        RedirectFile {
            active_url: url("http://a.example/"),
            dr_url: None,
            active_net_core_url: None,
            dr_net_core_url: Some(url("https://d.example/n?q='x'")),
        },
    ];

    for file in files {
        let xml = file.to_xml();
        let (parsed, warnings) = parse(xml.as_bytes()).unwrap();

        assert_eq!(parsed, file, "{xml}");
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

#[test]
fn to_xml_layout() {
    let file = RedirectFile {
        active_url: url("https://lic.example.com/"),
        dr_url: Some(url("https://dr.example.net/")),
        active_net_core_url: None,
        dr_net_core_url: None,
    };

    let xml = file.to_xml();

    assert_eq!(
        xml,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <QlmRedirection>\n\
         \x20 <activeUrl>https://lic.example.com/</activeUrl>\n\
         \x20 <drUrl>https://dr.example.net/</drUrl>\n\
         </QlmRedirection>\n"
    );
}

#[test]
fn to_xml_escapes_ampersand() {
    let xml = full_file().to_xml();

    assert!(xml.contains("?site=a&amp;mode=1"), "{xml}");
}

#[test]
fn same_site_cases() {
    let cases = [
        ("https://a.example/", "https://a.example/", true),
        ("https://a.example/", "https://a.example", true),
        ("https://A.Example/", "https://a.example/", true),
        ("https://a.example/", "https://a.example:443/", true),
        ("http://a.example/", "http://a.example:80/", true),
        ("https://a.example/qlm/", "https://a.example/qlm", true),
        ("https://a.example/qlm?x=1", "https://a.example/qlm", true),
        ("https://[::1]:8443/", "https://[0:0::1]:8443", true),
        ("https://a.example/", "http://a.example/", false),
        ("https://a.example/", "https://a.example:8443/", false),
        ("http://a.example/", "http://a.example:443/", false),
        ("https://a.example/", "https://b.example/", false),
        ("https://a.example/qlm", "https://a.example/QLM", false),
        ("https://a.example/qlm", "https://a.example/qlm/v2", false),
    ];

    for (a, b, expected) in cases {
        assert_eq!(same_site(&url(a), &url(b)), expected, "{a} vs {b}");
        assert_eq!(same_site(&url(b), &url(a)), expected, "{b} vs {a}");
    }
}

#[test]
fn switch_active_swaps_with_dr() {
    let mut file = full_file();
    let old = full_file();

    file.switch_active(url("https://dr.example.net/qlm/service.asmx/"));

    assert_eq!(
        file.active_url.as_str(),
        "https://dr.example.net/qlm/service.asmx/"
    );
    assert_eq!(file.dr_url.as_ref(), Some(&old.active_url));
    assert_eq!(file.active_net_core_url, old.dr_net_core_url);
    assert_eq!(file.dr_net_core_url, old.active_net_core_url);
}

#[test]
fn switch_active_to_new_server_keeps_dr() {
    let mut file = full_file();
    let old = full_file();

    file.switch_active(url("https://third.example.org/"));

    assert_eq!(file.active_url.as_str(), "https://third.example.org/");
    assert_eq!(file.dr_url, old.dr_url);
    assert_eq!(file.active_net_core_url, old.active_net_core_url);
    assert_eq!(file.dr_net_core_url, old.dr_net_core_url);
}

#[test]
fn set_active_swaps_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qlmredirect.xml");
    fs::write(
        &path,
        "<QlmRedirection><!-- primary --><activeUrl>https://lic.example.com/</activeUrl>\
         <drUrl>https://dr.example.net/</drUrl>\
         <activeNetCoreUrl>https://lic.example.com/api</activeNetCoreUrl>\
         <drNetCoreUrl>https://dr.example.net/api</drNetCoreUrl></QlmRedirection>",
    )
    .unwrap();

    let returned = set_active(&path, &url("https://dr.example.net/")).unwrap();

    let (on_disk, _) = parse(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk, returned);
    assert_eq!(on_disk.active_url.as_str(), "https://dr.example.net/");
    assert_eq!(on_disk.dr_url.unwrap().as_str(), "https://lic.example.com/");
    assert_eq!(
        on_disk.active_net_core_url.unwrap().as_str(),
        "https://dr.example.net/api"
    );
    assert_eq!(
        on_disk.dr_net_core_url.unwrap().as_str(),
        "https://lic.example.com/api"
    );
}

#[test]
fn set_active_to_current_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qlmredirect.xml");
    let original = "<QlmRedirection><!-- keep --><activeUrl>https://lic.example.com/</activeUrl>\
                    </QlmRedirection>";
    fs::write(&path, original).unwrap();

    let returned = set_active(&path, &url("https://LIC.example.com:443")).unwrap();

    assert_eq!(returned.active_url.as_str(), "https://lic.example.com/");
    assert_eq!(fs::read_to_string(&path).unwrap(), original);
}

#[test]
fn set_active_rejects_bad_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qlmredirect.xml");
    let original = "<QlmRedirection><activeUrl>https://lic.example.com/</activeUrl>\
                    </QlmRedirection>";
    fs::write(&path, original).unwrap();

    let err = set_active(&path, &url("ftp://lic.example.com/")).unwrap_err();

    assert!(
        matches!(
            err,
            FileError::Invalid {
                source: RedirectError::UnsupportedScheme { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("qlmredirect.xml"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), original);
}

#[test]
fn set_active_rejects_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qlmredirect.xml");
    fs::write(
        &path,
        "<QlmRedirection><drUrl>https://d.example/</drUrl></QlmRedirection>",
    )
    .unwrap();

    let err = set_active(&path, &url("https://d.example/")).unwrap_err();

    assert!(
        matches!(
            err,
            FileError::Invalid {
                source: RedirectError::MissingElement { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn set_active_reports_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.xml");

    let err = set_active(&path, &url("https://d.example/")).unwrap_err();

    assert!(matches!(err, FileError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.xml"), "{err}");
}

#[cfg(unix)]
#[test]
fn write_atomically_keeps_mode() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qlmredirect.xml");
    fs::write(&path, "old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();

    write_atomically(&path, &full_file()).unwrap();

    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(fs::read_to_string(&path).unwrap(), full_file().to_xml());
}

#[cfg(unix)]
#[test]
fn write_atomically_new_file_mode() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qlmredirect.xml");

    write_atomically(&path, &full_file()).unwrap();

    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

#[test]
fn write_atomically_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qlmredirect.xml");

    write_atomically(&path, &full_file()).unwrap();
    write_atomically(&path, &full_file()).unwrap();

    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["qlmredirect.xml"]);
}

#[cfg(unix)]
#[test]
fn write_atomically_follows_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.xml");
    let link = dir.path().join("qlmredirect.xml");
    fs::write(&target, "old").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();

    write_atomically(&link, &full_file()).unwrap();

    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), full_file().to_xml());
}

#[test]
fn show_lists_urls_and_warnings() {
    let input = b"<QlmRedirection><activeUrl>https://lic.example.com/</activeUrl>\
                  <drUrl>https://dr.example.net/</drUrl><note/></QlmRedirection>";

    let output = show(input).unwrap();

    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 5, "{output}");
    assert_eq!(lines[0], "activeUrl:        https://lic.example.com/");
    assert_eq!(lines[1], "drUrl:            https://dr.example.net/");
    assert_eq!(lines[2], "activeNetCoreUrl: (not set)");
    assert_eq!(lines[3], "drNetCoreUrl:     (not set)");
    assert!(
        lines[4].starts_with("warning: ") && lines[4].contains("<note>"),
        "{output}"
    );
}

#[test]
fn show_rejects_invalid_content() {
    let result = show(b"<QlmRedirection/>");

    assert!(
        matches!(result, Err(RedirectError::MissingElement { .. })),
        "{result:?}"
    );
}
