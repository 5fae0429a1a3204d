//! Data attribution (`spex::value::data`): a planted case whose answer is known, batched
//! training against separate trainings and against an independent `f64` reference, the fused
//! CPU kernels against the device-generic tensor operations, the value targets, and bad input.

use candle_core::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spex::explain::Explainer;
use spex::mask::{Mask, MaskBatch, MaskRef};
use spex::plan::Method;
use spex::planted::standard_normal;
use spex::transform::Index;
use spex::value::data::{
    reference, BatchTrainer, ClassChoice, DataError, DataValue, Features, ModelKind, ModelParams, Precision,
    Standardizer, Target, TrainConfig, ValueSpec,
};
use spex::value::ValueFunction;

const CPU: Device = Device::Cpu;

/// `rows` examples in `dim` dimensions, `classes` Gaussian clusters, standardised.
fn blobs(rows: usize, dim: usize, classes: usize, seed: u64) -> Features {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f64> = (0..classes * dim).map(|_| 1.5 * standard_normal(&mut rng)).collect();
    let mut x = Vec::new();
    let mut labels = Vec::new();
    for i in 0..rows {
        let c = i % classes;
        x.extend((0..dim).map(|j| centres[c * dim + j] + standard_normal(&mut rng)));
        labels.push(format!("c{c}"));
    }
    let f = Features::from_labels(x, dim, &labels, None).unwrap();
    Standardizer::fit(&f).apply(&f)
}

/// Random masks over `n` players, plus the empty and the full mask.
fn masks(n: usize, rows: usize, seed: u64) -> MaskBatch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut batch = MaskBatch::new(n);
    batch.push(Mask::zeros(n).as_ref()).unwrap();
    batch.push(Mask::ones(n).as_ref()).unwrap();
    for _ in 2..rows {
        let p: f64 = rng.random_range(0.2..0.9);
        let bits: Vec<bool> = (0..n).map(|_| rng.random::<f64>() < p).collect();
        batch.push(Mask::from_bools(&bits).as_ref()).unwrap();
    }
    batch
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn config(model: ModelKind, precision: Precision) -> TrainConfig {
    TrainConfig { model, steps: 60, precision, ..TrainConfig::default() }
}

const MODELS: [ModelKind; 2] = [ModelKind::LogReg, ModelKind::Mlp { hidden: 7 }];

/// The planted case: a test point that only a group of four training examples resembles (a
/// feature nobody else has), three labelled "pos" and one mislabelled "neg", amid 12 background
/// examples that are far from it. The test margin of "pos" is driven by the group: the top
/// interactions must consist of group members only, and every member must show up.
#[test]
fn planted_group_drives_the_test_prediction() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut x = Vec::new();
    let mut labels = Vec::new();
    for i in 0..12 {
        let (side, label) = if i % 2 == 0 { (-2.0, "neg") } else { (2.0, "pos") };
        x.extend([side + 0.3 * standard_normal(&mut rng), 0.3 * standard_normal(&mut rng), 0.0]);
        labels.push(label);
    }
    // The group: players 12, 13, 14 ("pos") and 15 (mislabelled "neg"), near the test point.
    for label in ["pos", "pos", "pos", "neg"] {
        x.extend([0.1 * standard_normal(&mut rng), 0.1 * standard_normal(&mut rng), 3.0]);
        labels.push(label);
    }
    let train = Features::from_labels(x, 3, &labels, None).unwrap();
    let test = Features::from_labels(vec![0.0, 0.0, 3.0], 3, &["pos"], None).unwrap();
    let spec = ValueSpec { target: Target::Margin, test: Some(0), class: ClassChoice::True };
    let mut f = DataValue::new(&train, &test, &spec, TrainConfig::default(), &CPU).unwrap();
    let group = [12u32, 13, 14, 15];
    let explanation = Explainer::new(16).method(Method::Spex).budget(3000).explain(&mut f).unwrap();
    assert!(explanation.faithfulness.r2.unwrap() > 0.95, "R² {:?}", explanation.faithfulness.r2);
    let fsii = explanation.interactions(Index::Fsii, 2).unwrap();
    let top: Vec<Vec<u32>> =
        fsii.values.iter().filter(|(s, _)| !s.is_empty()).take(6).map(|(s, _)| s.players().to_vec()).collect();
    for players in &top {
        assert!(players.iter().all(|p| group.contains(p)), "top interactions {top:?} leave the group {group:?}");
    }
    for p in group {
        assert!(top.iter().any(|s| s == &vec![p]), "group member {p} missing from the top interactions {top:?}");
    }
    // The signs: the three "pos" duplicates raise the margin of "pos", the mislabelled one lowers it.
    let value = |p: u32| fsii.values.iter().find(|(s, _)| s.players() == [p]).unwrap().1;
    assert!(value(12) > 0.0 && value(13) > 0.0 && value(14) > 0.0 && value(15) < 0.0);
}

/// Training a batch at once equals training every mask alone (one block of one model), for
/// both models, both code paths, and several block sizes; the f32 tolerance is 1e-4 on logits
/// and parameters of order 1 (GEMMs of different shapes round differently).
#[test]
fn batched_training_equals_separate_trainings() {
    let train = blobs(40, 5, 3, 1);
    let batch = masks(40, 13, 2);
    for model in MODELS {
        for fused in [true, false] {
            for precision in [Precision::F32, Precision::F64] {
                let tolerance = if precision == Precision::F32 { 1e-4 } else { 1e-11 };
                let separate_config = TrainConfig { block: 1, fused, ..config(model, precision) };
                let separate = BatchTrainer::new(&train, separate_config, &CPU).unwrap();
                let expected: Vec<ModelParams> = (0..batch.len())
                    .flat_map(|i| separate.train(batch.slice(i..i + 1)).unwrap().params().unwrap())
                    .collect();
                for block in [0, 4, 13] {
                    let trainer =
                        BatchTrainer::new(&train, TrainConfig { block, fused, ..config(model, precision) }, &CPU)
                            .unwrap();
                    let trained = trainer.train(batch.as_slice()).unwrap();
                    let got = trained.params().unwrap();
                    assert_eq!(got.len(), batch.len());
                    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                        let d = max_abs_diff(&g.flat(), &e.flat());
                        assert!(
                            d < tolerance,
                            "{model:?} fused={fused} {precision:?} block {block}: model {i} differs by {d}"
                        );
                    }
                    // The logits the value function reads agree with the parameters.
                    let logits = trained.logits(train.row(5), 1).unwrap();
                    for (i, e) in expected.iter().enumerate() {
                        let d = max_abs_diff(&logits[i * 3..(i + 1) * 3], &e.logits(train.row(5)));
                        assert!(d < tolerance * 10.0, "{model:?}: logits of model {i} differ by {d}");
                    }
                }
            }
        }
    }
}

/// The tensor program against the textbook `f64` loops of `reference::train`: in f64 they agree
/// to rounding (1e-9), which checks the algorithm; in f32 the gap on logits stays below 1e-4 (measured: 4e-6 for logistic regression, 6e-6 for the MLP).
#[test]
fn f32_and_f64_training_against_the_f64_reference() {
    let train = blobs(30, 4, 3, 5);
    let batch = masks(30, 9, 6);
    for model in MODELS {
        let mut gaps = vec![];
        for precision in [Precision::F64, Precision::F32] {
            let cfg = config(model, precision);
            let trainer = BatchTrainer::new(&train, cfg.clone(), &CPU).unwrap();
            let got = trainer.train(batch.as_slice()).unwrap().params().unwrap();
            let mut gap: f64 = 0.0;
            for (i, mask) in batch.iter().enumerate() {
                let want = reference::train(&train, mask, &cfg, trainer.learning_rate());
                for row in 0..train.rows() {
                    gap = gap.max(max_abs_diff(&got[i].logits(train.row(row)), &want.logits(train.row(row))));
                }
            }
            gaps.push(gap);
        }
        assert!(gaps[0] < 1e-9, "{model:?}: f64 tensors vs f64 reference differ by {}", gaps[0]);
        assert!(gaps[1] < 1e-4, "{model:?}: f32 tensors vs f64 reference differ by {}", gaps[1]);
        assert!(gaps[1] > 0.0, "f32 training should not be bit-identical to f64");
    }
}

/// Margin, log-odds and loss from the reference model's logits, the empty subset's value, and
/// the predicted class.
#[test]
fn targets_match_their_definitions() {
    let raw = blobs(24, 3, 3, 9); // already standardised, so DataValue's standardisation is the identity
    let batch = masks(24, 6, 10);
    let cfg = TrainConfig { steps: 40, precision: Precision::F64, ..TrainConfig::default() };
    let lr = BatchTrainer::new(&raw, cfg.clone(), &CPU).unwrap().learning_rate();
    let models: Vec<ModelParams> = batch.iter().map(|m| reference::train(&raw, m, &cfg, lr)).collect();
    let lse = |z: &[f64]| z.iter().map(|v| v.exp()).sum::<f64>().ln();
    let test = 7;
    let z = |m: &ModelParams, row: usize| m.logits(raw.row(row));
    let class = raw.y[test];
    type Want<'a> = Box<dyn Fn(&ModelParams) -> f64 + 'a>;
    let cases: Vec<(ValueSpec, Want<'_>)> = vec![
        (
            ValueSpec { target: Target::Margin, test: Some(test), class: ClassChoice::True },
            Box::new(|m| {
                let z = z(m, test);
                z[class] - (0..3).filter(|&j| j != class).map(|j| z[j]).fold(f64::MIN, f64::max)
            }),
        ),
        (
            ValueSpec { target: Target::LogOdds, test: Some(test), class: ClassChoice::Label("c2".into()) },
            Box::new(|m| {
                let z = z(m, test);
                let p = z[2].exp() / z.iter().map(|v| v.exp()).sum::<f64>();
                (p / (1.0 - p)).ln()
            }),
        ),
        (
            ValueSpec { target: Target::Loss, test: Some(test), class: ClassChoice::True },
            Box::new(|m| lse(&z(m, test)) - z(m, test)[class]),
        ),
        (
            ValueSpec { target: Target::Loss, test: None, class: ClassChoice::True },
            Box::new(|m| (0..24).map(|r| lse(&z(m, r)) - z(m, r)[raw.y[r]]).sum::<f64>() / 24.0),
        ),
    ];
    for (spec, want) in cases {
        let mut f = DataValue::new(&raw, &raw, &spec, cfg.clone(), &CPU).unwrap();
        let got = f.evaluate(batch.as_slice()).unwrap();
        for (i, m) in models.iter().enumerate() {
            assert!((got[i] - want(m)).abs() < 1e-9, "{spec:?}, mask {i}: {} vs {}", got[i], want(m));
        }
    }
    // The empty subset (mask 0) is the untrained, all-zero logistic regression.
    let value = |target, class| {
        let spec = ValueSpec { target, test: Some(test), class };
        DataValue::new(&raw, &raw, &spec, cfg.clone(), &CPU).unwrap().values(batch.slice(0..1)).unwrap()[0]
    };
    assert_eq!(value(Target::Margin, ClassChoice::True), 0.0);
    assert!((value(Target::LogOdds, ClassChoice::True) + 2f64.ln()).abs() < 1e-12);
    assert!((value(Target::Loss, ClassChoice::True) - 3f64.ln()).abs() < 1e-12);
    // Predicted: the argmax of the model trained on everything.
    let spec = ValueSpec { target: Target::Margin, test: Some(test), class: ClassChoice::Predicted };
    let f = DataValue::new(&raw, &raw, &spec, cfg.clone(), &CPU).unwrap();
    let full = z(&models[1], test);
    let argmax = (0..3).max_by(|&a, &b| full[a].total_cmp(&full[b])).unwrap();
    assert_eq!(f.class(), Some(argmax));
}

/// The MLP's empty subset is its seeded initialisation, and another seed changes it.
#[test]
fn empty_subset_is_the_initial_model() {
    let train = blobs(20, 3, 2, 4);
    let cfg = |seed| TrainConfig { model: ModelKind::Mlp { hidden: 5 }, seed, steps: 10, ..TrainConfig::default() };
    let empty = MaskBatch::parse_rows(["0".repeat(20).as_str()]).unwrap();
    let trainer = BatchTrainer::new(&train, cfg(1), &CPU).unwrap();
    let trained = trainer.train(empty.as_slice()).unwrap().params().unwrap();
    assert!(max_abs_diff(&trained[0].flat(), &trainer.init().flat()) < 1e-7);
    assert_eq!(trainer.init(), &ModelParams::init(ModelKind::Mlp { hidden: 5 }, 3, 2, 1));
    assert_ne!(trainer.init(), &ModelParams::init(ModelKind::Mlp { hidden: 5 }, 3, 2, 2));
}

#[test]
fn bad_input_is_a_typed_error() {
    let train = blobs(10, 2, 2, 0);
    let spec = |test| ValueSpec { target: Target::Margin, test, class: ClassChoice::True };
    let new = |train: &Features, test: &Features, spec: &ValueSpec, cfg: TrainConfig| {
        DataValue::new(train, test, spec, cfg, &CPU).err().expect("should fail")
    };
    let cfg = TrainConfig::default();
    let one_class = Features::from_labels(vec![1.0, 2.0, 3.0], 1, &["a", "a", "a"], None).unwrap();
    let e = new(&one_class, &one_class, &spec(Some(0)), cfg.clone());
    assert!(matches!(&e, DataError::SingleClass { class } if class == "a"), "{e}");
    let e = new(&train, &train, &spec(Some(10)), cfg.clone());
    assert_eq!(e.to_string(), "test index 10 is out of range: the test set has 10 examples (0-based: 0..10)");
    assert!(matches!(new(&train, &train, &spec(None), cfg.clone()), DataError::NeedsTestIndex(Target::Margin)));
    let other = Features::from_labels(vec![1.0; 3], 3, &["c0"], None).unwrap();
    assert!(matches!(new(&train, &other, &spec(Some(0)), cfg.clone()), DataError::FeatureCount { train: 2, test: 3 }));
    // Headers that name the columns in another order: matched by position, they would mislead.
    let named = |names: [&str; 2]| Features { feature_names: Some(names.map(String::from).to_vec()), ..train.clone() };
    let e = new(&named(["a", "b"]), &named(["b", "a"]), &spec(Some(0)), cfg.clone());
    assert!(matches!(&e, DataError::FeatureNames { train, test } if train == "a, b" && test == "b, a"), "{e}");
    assert!(DataValue::new(&named(["a", "b"]), &train, &spec(Some(0)), cfg.clone(), &CPU).is_ok());
    let unseen = Features::from_labels(vec![1.0, 2.0], 2, &["zebra"], None).unwrap();
    let e = new(&train, &unseen, &spec(Some(0)), cfg.clone());
    assert!(matches!(&e, DataError::UnknownLabel { label, .. } if label == "zebra"), "{e}");
    let by_label = ValueSpec { class: ClassChoice::Label("nope".into()), ..spec(Some(0)) };
    assert!(matches!(new(&train, &train, &by_label, cfg.clone()), DataError::UnknownClass { .. }));
    for bad in [
        TrainConfig { lr: Some(0.0), ..cfg.clone() },
        TrainConfig { lr: Some(f64::NAN), ..cfg.clone() },
        TrainConfig { l2: -1.0, ..cfg.clone() },
        TrainConfig { model: ModelKind::Mlp { hidden: 0 }, ..cfg.clone() },
        TrainConfig { steps: 0, ..cfg.clone() },
    ] {
        assert!(matches!(new(&train, &train, &spec(Some(0)), bad), DataError::Config(_)));
    }
    // A step size that diverges is named, not passed on as NaN values.
    let huge = TrainConfig { lr: Some(1e300), ..cfg.clone() };
    let rows = masks(10, 4, 1);
    let e = DataValue::new(&train, &train, &spec(Some(0)), huge, &CPU).unwrap().evaluate(rows.as_slice()).unwrap_err();
    assert!(e.to_string().contains("training diverged"), "{e}");
    let mut f = DataValue::new(&train, &train, &spec(Some(0)), cfg, &CPU).unwrap();
    let narrow = MaskBatch::parse_rows(["101"]).unwrap();
    let e = f.evaluate(narrow.as_slice()).unwrap_err();
    assert_eq!(e.to_string(), "masks have 3 players but there are 10 training examples");
    // A file that cannot be read names itself.
    let e = Features::from_csv(std::path::Path::new("/nonexistent/train.csv"), &Default::default()).unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/train.csv: cannot read"), "{e}");
}

/// A mask that is not a row of a batch still trains (the value function sees `MaskRef`s).
#[test]
fn reference_handles_any_mask() {
    let train = blobs(8, 2, 2, 3);
    let m = Mask::from_bools(&[true, false, true, true, false, false, true, true]);
    let cfg = TrainConfig::default();
    let lr = BatchTrainer::new(&train, cfg.clone(), &CPU).unwrap().learning_rate();
    let r: MaskRef<'_> = m.as_ref();
    assert_eq!(reference::train(&train, r, &cfg, lr).classes(), 2);
}
