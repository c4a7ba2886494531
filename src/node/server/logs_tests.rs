use super::*;

struct Stopped;
impl StillRunning for Stopped {
    async fn check(&mut self) -> bool {
        false
    }
}

fn opts() -> LogOptions {
    LogOptions::default()
}

async fn read(files: Vec<PathBuf>, o: LogOptions) -> String {
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(stream(files, o, tx, Stopped));
    let mut out = Vec::new();
    while let Some(chunk) = rx.recv().await {
        out.extend_from_slice(&chunk);
    }
    task.await.unwrap().unwrap();
    String::from_utf8(out).unwrap()
}

const LOG: &str = "\
2024-01-01T00:00:01.000000001Z stdout F one
2024-01-01T00:00:02Z stderr P tw
2024-01-01T00:00:02.5Z stderr F o
2024-01-01T00:00:03Z stdout F three
2024-01-01T00:00:04Z stdout F 
2024-01-01T00:00:05Z stdout F five
";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn partial_records_are_joined_into_one_line() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "0.log", LOG);
    assert_eq!(read(vec![f], opts()).await, "one\ntwo\nthree\n\nfive\n");
}

#[tokio::test]
async fn timestamps_prefix_each_line_once() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "0.log", LOG);
    let o = LogOptions {
        timestamps: true,
        tail_lines: Some(4),
        ..opts()
    };
    assert_eq!(
        read(vec![f], o).await,
        "2024-01-01T00:00:02Z two\n2024-01-01T00:00:03Z three\n\
         2024-01-01T00:00:04Z \n2024-01-01T00:00:05Z five\n"
    );
}

#[tokio::test]
async fn tail_counts_logical_lines_and_zero_means_none() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "0.log", LOG);
    let tail = |n| LogOptions {
        tail_lines: Some(n),
        ..opts()
    };
    assert_eq!(read(vec![f.clone()], tail(0)).await, "");
    assert_eq!(read(vec![f.clone()], tail(1)).await, "five\n");
    assert_eq!(read(vec![f.clone()], tail(4)).await, "two\nthree\n\nfive\n");
    assert_eq!(
        read(vec![f.clone()], tail(100)).await,
        "one\ntwo\nthree\n\nfive\n"
    );
}

#[tokio::test]
async fn since_and_limit_bytes() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "0.log", LOG);
    let since = LogOptions {
        since: Some("2024-01-01T00:00:03Z".parse().unwrap()),
        ..opts()
    };
    assert_eq!(read(vec![f.clone()], since).await, "three\n\nfive\n");
    let limit = LogOptions {
        limit_bytes: Some(6),
        ..opts()
    };
    assert_eq!(read(vec![f], limit).await, "one\ntw");
}

#[tokio::test]
async fn rotated_files_come_first_and_tail_crosses_them() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "0.log.20240101-000001",
        "2024-01-01T00:00:00Z stdout F old1\n2024-01-01T00:00:00Z stdout P old",
    );
    write(d.path(), "0.log.20240101-000000.gz", "not read");
    let current = write(d.path(), "0.log", "2024-01-01T00:00:09Z stdout F new\n");
    write(
        d.path(),
        "0.log.20240101-000002",
        "2024-01-01T00:00:01Z stdout F 2\n",
    );
    let files = log_files(&current);
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[0].ends_with("0.log.20240101-000001"));
    assert!(files[2].ends_with("0.log"));
    // The unterminated record at the end of the first file is joined
    // with nothing (its line was cut): it ends up before the next one.
    assert_eq!(read(files.clone(), opts()).await, "old1\nold2\nnew\n");
    let tail = LogOptions {
        tail_lines: Some(2),
        ..opts()
    };
    assert_eq!(read(files, tail).await, "old2\nnew\n");
}

#[tokio::test]
async fn a_huge_line_streams_in_pieces() {
    let d = tempfile::tempdir().unwrap();
    let piece = "x".repeat(16 * 1024);
    let mut text = String::new();
    for _ in 0..200 {
        text += &format!("2024-01-01T00:00:01Z stdout P {piece}\n");
    }
    text += "2024-01-01T00:00:01Z stdout F end\n";
    let f = write(d.path(), "0.log", &text);
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(stream(vec![f], opts(), tx, Stopped));
    let (mut total, mut biggest) = (0, 0);
    while let Some(chunk) = rx.recv().await {
        total += chunk.len();
        biggest = biggest.max(chunk.len());
    }
    task.await.unwrap().unwrap();
    assert_eq!(total, 200 * piece.len() + 4);
    assert!(
        biggest < 256 * 1024,
        "sent in bounded chunks, not whole: {biggest}"
    );
}

#[tokio::test]
async fn follow_sees_appends_and_ends_when_the_container_stops() {
    struct RunsFor(u32);
    impl StillRunning for RunsFor {
        async fn check(&mut self) -> bool {
            self.0 = self.0.saturating_sub(1);
            self.0 > 0
        }
    }
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "0.log", "2024-01-01T00:00:01Z stdout F a\n");
    let (tx, mut rx) = mpsc::channel(16);
    let o = LogOptions {
        follow: true,
        ..opts()
    };
    let task = tokio::spawn(stream(vec![f.clone()], o, tx, RunsFor(3)));
    assert_eq!(&rx.recv().await.unwrap()[..], b"a\n");
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
    file.write_all(b"2024-01-01T00:00:02Z stdout F b\n")
        .unwrap();
    assert_eq!(&rx.recv().await.unwrap()[..], b"b\n");
    // Rotation: the path becomes a new file; the follow goes on in it.
    std::fs::rename(&f, d.path().join("0.log.1")).unwrap();
    std::fs::write(&f, "2024-01-01T00:00:03Z stdout F c\n").unwrap();
    assert_eq!(&rx.recv().await.unwrap()[..], b"c\n");
    let ended = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    assert!(matches!(ended, Ok(None)), "the stream ends: {ended:?}");
    task.await.unwrap().unwrap();
}

#[test]
fn options_parse_as_the_kubelet_checks_them() {
    let now: Timestamp = "2024-01-01T00:01:00Z".parse().unwrap();
    let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let o = LogOptions::parse(
        &q(&[
            ("follow", "true"),
            ("tailLines", "3"),
            ("sinceSeconds", "30"),
            ("timestamps", "1"),
            ("limitBytes", "10"),
            ("previous", "false"),
        ]),
        now,
    )
    .unwrap();
    assert!(o.follow && o.timestamps && !o.previous);
    assert_eq!(o.tail_lines, Some(3));
    assert_eq!(o.limit_bytes, Some(10));
    assert_eq!(o.since, Some("2024-01-01T00:00:30Z".parse().unwrap()));
    assert!(matches!(
        LogOptions::parse(&q(&[("sinceTime", "yesterday")]), now),
        Err(OptionsError::BadRequest(_))
    ));
    assert!(matches!(
        LogOptions::parse(&q(&[("tailLines", "-1")]), now),
        Err(OptionsError::Invalid(_))
    ));
    assert!(matches!(
        LogOptions::parse(&q(&[("limitBytes", "x")]), now),
        Err(OptionsError::BadRequest(_))
    ));
    assert!(matches!(
        LogOptions::parse(
            &q(&[("sinceTime", "2024-01-01T00:00:00Z"), ("sinceSeconds", "5")]),
            now
        ),
        Err(OptionsError::Invalid(_))
    ));
}
