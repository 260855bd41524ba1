//! `dvr-preview-decoder` as the packager drives it: one process, picture
//! after picture on its pipes. A keyframe MP4 made by ffmpeg decodes to a
//! JPEG that Debian's PIL reads at the asked size; bytes that are no MP4
//! get a status-1 line and the process goes on serving; a job past the
//! size cap is refused and the process ends; end of input ends it cleanly.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use dvr_testkit::ffmpeg::{ffmpeg, run};
use dvr_testkit::pil::picture_size;

/// One 640x360 H.264 keyframe in an MP4, by ffmpeg.
fn keyframe_mp4(dir: &std::path::Path) -> Vec<u8> {
    let path = dir.join("k.mp4");
    run(ffmpeg()
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-frames:v", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&path));
    std::fs::read(path).unwrap()
}

/// The decoder under test, and its pipes.
fn start() -> (Child, ChildStdin, ChildStdout) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvr-preview-decoder"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    (child, stdin, stdout)
}

fn ask(to: &mut impl Write, width: u32, mp4: &[u8]) {
    to.write_all(&width.to_be_bytes()).unwrap();
    to.write_all(&u32::try_from(mp4.len()).unwrap().to_be_bytes())
        .unwrap();
    to.write_all(mp4).unwrap();
    to.flush().unwrap();
}

fn answer(from: &mut impl Read) -> (u8, Vec<u8>) {
    let mut head = [0u8; 5];
    from.read_exact(&mut head).unwrap();
    let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut bytes = vec![0u8; length];
    from.read_exact(&mut bytes).unwrap();
    (head[0], bytes)
}

#[test]
fn pictures_one_after_another_and_bad_input_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mp4 = keyframe_mp4(dir.path());
    let (mut child, mut stdin, mut stdout) = start();

    ask(&mut stdin, 0, &mp4);
    let (status, jpeg) = answer(&mut stdout);
    assert_eq!(status, 0, "{}", String::from_utf8_lossy(&jpeg));
    assert_eq!(picture_size(&jpeg), (640, 360, "JPEG".to_owned()));

    ask(&mut stdin, 0, b"not an mp4 at all");
    let (status, why) = answer(&mut stdout);
    let why = String::from_utf8(why).unwrap();
    assert_eq!(status, 1, "{why}");
    assert!(why.starts_with("reading the MP4: "), "{why}");

    // Still serving, at another size.
    ask(&mut stdin, 320, &mp4);
    let (status, jpeg) = answer(&mut stdout);
    assert_eq!(status, 0);
    assert_eq!(picture_size(&jpeg), (320, 180, "JPEG".to_owned()));

    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_job_past_the_cap_is_refused_and_ends_the_process() {
    let (mut child, mut stdin, mut stdout) = start();
    stdin.write_all(&0u32.to_be_bytes()).unwrap();
    stdin.write_all(&(64u32 << 20).to_be_bytes()).unwrap();
    stdin.flush().unwrap();
    let (status, why) = answer(&mut stdout);
    assert_eq!(
        (status, String::from_utf8(why).unwrap().as_str()),
        (1, "the keyframe is 67108864 bytes, more than 33554432")
    );
    assert!(child.wait().unwrap().success());
}
