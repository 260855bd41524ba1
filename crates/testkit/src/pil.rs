//! Pictures judged by Debian's PIL under Debian's python3 (`make
//! test-deps` installs python3-pil): a JPEG decoder independent of
//! libavcodec, which makes the pictures under test.

use std::process::Command;

/// (width, height, format) of the picture `bytes`, as PIL decodes it;
/// fails the test when PIL cannot.
pub fn picture_size(bytes: &[u8]) -> (u32, u32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("picture");
    std::fs::write(&path, bytes).expect("write the picture");
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys; from PIL import Image; im = Image.open(sys.argv[1]); im.load(); print(im.width, im.height, im.format)",
        ])
        .arg(&path)
        .output()
        .expect("python3-pil (make test-deps)");
    assert!(
        out.status.success(),
        "PIL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let mut next = || fields.next().expect("PIL printed a size").to_owned();
    (
        next().parse().expect("a width"),
        next().parse().expect("a height"),
        next(),
    )
}
