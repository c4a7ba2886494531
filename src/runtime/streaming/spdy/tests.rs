use super::*;

#[test]
fn the_dictionary_is_spdy3s() {
    // Its Adler-32 is the DICTID every SPDY/3 client puts in its first
    // header block.
    let mut c = Compress::new(Compression::default(), true);
    let id = c.set_dictionary(&DICTIONARY).unwrap();
    assert_eq!(DICTIONARY.len(), 1423);
    assert_eq!(id, 0xe3c6_a7c2);
}

#[test]
fn header_blocks_round_trip_across_frames() {
    let mut w = HeaderWriter::new();
    let mut r = HeaderReader::new();
    let first: Headers = vec![("streamtype".into(), "error".into())];
    let second: Headers = vec![
        ("streamtype".into(), "data".into()),
        ("port".into(), "8080".into()),
    ];
    assert_eq!(r.decode(&w.encode(&first).unwrap()).unwrap(), first);
    assert_eq!(r.decode(&w.encode(&second).unwrap()).unwrap(), second);
    assert_eq!(r.decode(&w.encode(&Vec::new()).unwrap()).unwrap(), vec![]);
}

#[tokio::test]
async fn streams_carry_data_and_fin_both_ways() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let mut server = Connection::new(a);
    let client = Connection::new(b);
    let opening = tokio::spawn(async move {
        let s = client
            .open(vec![("streamtype".into(), "stdin".into())])
            .await
            .unwrap();
        (client, s)
    });
    let mut theirs = server.accept().await.unwrap();
    assert_eq!(header(&theirs.headers, "streamType"), Some("stdin"));
    let (_client, mut ours) = opening.await.unwrap();
    assert!(ours.writer.write(b"ping").await);
    ours.writer.close().await;
    assert_eq!(&theirs.incoming.recv().await.unwrap()[..], b"ping");
    assert!(theirs.incoming.recv().await.is_none());
    assert!(theirs.writer.write(&vec![7u8; 100_000]).await);
    theirs.writer.close().await;
    let mut got = 0;
    while let Some(chunk) = ours.incoming.recv().await {
        got += chunk.len();
    }
    assert_eq!(got, 100_000);
}

#[test]
fn repeated_values_split_on_nul() {
    let mut b = Vec::new();
    b.put_u32(1);
    b.put_u32(1);
    b.put_slice(b"A");
    b.put_u32(3);
    b.put_slice(b"x\0y");
    let h = parse_headers(&b).unwrap();
    assert_eq!(h, vec![("a".into(), "x".into()), ("a".into(), "y".into())]);
    assert!(parse_headers(&[0, 0, 0, 1, 0, 0, 0, 9]).is_err());
}
