//! `spex data` end to end on a tiny CSV: the planted group of training examples comes out on
//! top with its ids and labels as names, the run directory resumes, and bad input fails with a
//! message instead of a panic.

mod common;

use std::path::Path;

use common::cli::{fails, json, ok};

/// Twelve background examples far from the test point and a group of four near it (`g0..g2`
/// labelled pos, `g3` mislabelled neg) that alone have the third feature.
const TRAIN: &str = "\
name,f1,f2,f3,label
b0,-2.1,0.2,0,neg
b1,2.2,-0.1,0,pos
b2,-1.8,-0.3,0,neg
b3,1.9,0.4,0,pos
b4,-2.3,0.1,0,neg
b5,2.0,0.3,0,pos
b6,-1.9,-0.2,0,neg
b7,2.1,-0.4,0,pos
b8,-2.0,0.3,0,neg
b9,1.8,0.1,0,pos
b10,-2.2,-0.1,0,neg
b11,2.3,0.2,0,pos
g0,0.05,-0.02,3,pos
g1,-0.04,0.06,3,pos
g2,0.02,0.01,3,pos
g3,-0.01,-0.05,3,neg
";

const TEST: &str = "name,f1,f2,f3,label\nt0,0,0,3,pos\n";

#[test]
fn data_explains_a_planted_group_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test, out) = (dir.path().join("train.csv"), dir.path().join("test.csv"), dir.path().join("run"));
    std::fs::write(&train, TRAIN).unwrap();
    std::fs::write(&test, TEST).unwrap();
    let args = |extra: &[&'static str]| {
        let mut a: Vec<String> = [
            "data",
            "--train",
            train.to_str().unwrap(),
            "--test",
            test.to_str().unwrap(),
            "--test-index",
            "0",
            "--id",
            "name",
            "--budget",
            "1500",
            "--index",
            "fsii",
            "--max-order",
            "2",
            "--top",
            "6",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |extra: &[&'static str]| {
        let a = args(extra);
        ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let stdout = run(&[]);
    assert!(stdout.contains("data: 16 training examples, 3 features, 2 classes; logistic regression"), "{stdout}");
    assert!(stdout.contains("value: margin of class \"pos\" at test example 0 (t0:pos)"), "{stdout}");
    assert!(stdout.contains("g3:neg"), "{stdout}");
    let result = json(&out.join("result.json"));
    assert_eq!(result["n"], 16);
    let players: Vec<&str> = result["players"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(players[0], "b0:neg");
    assert_eq!(players[15], "g3:neg");
    // The four strongest interactions are the group's members, each with its name.
    let top: Vec<(Vec<u64>, Vec<String>)> = result["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["players"].as_array().unwrap().is_empty())
        .take(4)
        .map(|e| {
            let p = e["players"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
            let n = e["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
            (p, n)
        })
        .collect();
    let mut singles: Vec<u64> = top.iter().map(|(p, _)| p[0]).collect();
    singles.sort();
    assert_eq!(singles, vec![12, 13, 14, 15], "{top:?}");
    assert_eq!(top[0], (vec![15], vec!["g3:neg".to_string()]), "the mislabelled example is the strongest");

    // Interrupted run: keep only the first batch in the store, refuse a fresh start, resume to
    // the same result.
    let store_path = out.join("samples.store");
    let full = spex::store::Store::open(&store_path, 1).unwrap();
    let (header, first) = (full.header().clone(), full.batches()[&0].clone());
    drop(full);
    std::fs::remove_file(&store_path).unwrap();
    spex::store::Store::create(&store_path, header, 1).unwrap().append(0, &first).unwrap();
    let a = args(&[]);
    let err = fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("unfinished run (1 of"), "{err}");
    run(&["--resume"]);
    let resumed = json(&out.join("result.json"));
    assert_eq!(resumed["interactions"], result["interactions"]);
    // Another model is another value function: resuming it is refused.
    let a = args(&["--resume", "--steps", "50"]);
    let err = fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("value function"), "{err}");
    // The MLP and the loss target run through the same machinery.
    let stdout = run(&["--force", "--model", "mlp", "--hidden", "4", "--target", "loss", "--steps", "50"]);
    assert!(stdout.contains("MLP with 4 hidden units, 50 steps"), "{stdout}");
    assert!(stdout.contains("value: loss at test example 0 (t0:pos)"), "{stdout}");
}

#[test]
fn data_rejects_bad_input_with_messages() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let out = dir.path().join("run");
    let out = out.to_str().unwrap();
    let data = |train: &str, extra: &[&str]| {
        let mut a = vec!["data", "--train", train, "--out", out, "--quiet", "--budget", "200", "--method", "uniform"];
        a.extend_from_slice(extra);
        fails(&a)
    };
    let ragged = write("ragged.csv", "a,b,label\n1,2,x\n3,y\n");
    assert!(data(&ragged, &["--test-index", "0"]).contains("ragged.csv line 3: 2 fields, but the first line has 3"));
    let text = write("text.csv", "a,b,label\n1,2,x\n3,oops,y\n");
    assert!(data(&text, &["--test-index", "0"])
        .contains("text.csv line 3, column 2 (\"b\"): \"oops\" is not a finite number"));
    let empty = write("empty.csv", "");
    assert!(data(&empty, &["--test-index", "0"]).contains("empty.csv: no data rows"));
    let single = write("single.csv", "a,label\n1,x\n2,x\n");
    assert!(data(&single, &["--test-index", "0"]).contains("every training example has the class \"x\""));
    let good = write("good.csv", "a,label\n1,x\n2,y\n3,x\n");
    assert!(data(&good, &["--test-index", "3"]).contains("test index 3 is out of range: the test set has 3 examples"));
    assert!(data(&good, &[]).contains("the margin target is about one test example: give a test index"));
    assert!(data(&good, &["--test-index", "0", "--label", "nope"]).contains("no column \"nope\" (label column)"));
    let numbered = write("numbered.csv", "id,0,label\n7,0.5,x\n8,0.1,y\n");
    assert!(data(&numbered, &["--test-index", "0", "--id", "0"]).contains(
        "\"0\" (id column) is the header name of the column at 0-based position 1, not of position 0; give @1 or @0"
    ));
    assert!(data(&numbered, &["--test-index", "0", "--id", "@3"]).contains("no column @3 (id column)"));
    assert!(data(&good, &["--test-index", "0", "--class", "zebra"]).contains("no class \"zebra\""));
    assert!(!Path::new(out).join("design.json").exists(), "bad input must fail before the run directory is written");
}

#[test]
fn a_test_file_with_the_training_files_numeric_header_skips_it() {
    // A header of numeric names, told apart in the training file by its numeric ids.
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = (dir.path().join("train.csv"), dir.path().join("test.csv"));
    std::fs::write(&train, "0,1,id,label\n-1,0.2,7,neg\n1,0.1,8,pos\n-2,0.3,9,neg\n2,-0.2,10,pos\n").unwrap();
    // One row of text id and label: its header shows only by naming the training file's columns.
    std::fs::write(&test, "0,1,id,label\n1.5,0,t,pos\n").unwrap();
    let (train, test) = (train.to_str().unwrap(), test.to_str().unwrap());
    let out = dir.path().join("run");
    let run = |header| {
        vec!["data", "--train", train, "--test", test, "--test-index", "0", "--id", "2", "--header", header, "-q"]
            .into_iter()
            .chain(["--force", "--out", out.to_str().unwrap()])
            .collect::<Vec<_>>()
    };
    ok(&run("auto"));
    assert_eq!(json(&out.join("result.json"))["n"], 4);
    // Read as data, the header line is a training example (and the test example) too.
    ok(&run("no"));
    assert_eq!(json(&out.join("result.json"))["n"], 5);
}
