//! The UCI client model (`models/uci_online_shoppers.json`, trained by
//! `nudge-train fit --spec training/specs/uci_online_shoppers.toml`) served
//! by a real server on 127.0.0.1:0: a Decide carrying one UCI row's
//! features gets the probability the trainer computes for that row, and a
//! missing or unknown feature is INVALID_ARGUMENT naming the field.
//!
//! Needs no data file: the row is hard-coded (line 200 of
//! `online_shoppers_intention.csv`).

use nudge::app;
use nudge::clock::{Clock, ManualClock};
use nudge::config::RawConfig;
use nudge::domain::model::{Model, ModelFile, Transform};
use nudge::grpc::pb;
use nudge::grpc::pb::offers_client::OffersClient;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const MODEL: &str = "models/uci_online_shoppers.json";

/// `nudge-train predict --model models/uci_online_shoppers.json --spec
/// training/specs/uci_online_shoppers.toml --data
/// ../shared/data/online_shoppers_intention.csv` for row 198 (line 200).
/// Update it whenever the shipped model is retrained.
const PREDICTED: f64 = 0.9387774581138255;

/// Line 200: 0,0,0,0,17,840.2333333,0,0.001666667,109.176,0,Mar,2,2,9,2,New_Visitor,FALSE,1
fn row() -> (HashMap<String, f64>, HashMap<String, String>) {
    let numeric = [
        ("Administrative", 0.0),
        ("Administrative_Duration", 0.0),
        ("Informational", 0.0),
        ("Informational_Duration", 0.0),
        ("ProductRelated", 17.0),
        ("ProductRelated_Duration", 840.2333333),
        ("BounceRates", 0.0),
        ("ExitRates", 0.001666667),
        ("PageValues", 109.176),
        ("SpecialDay", 0.0),
        ("Weekend", 0.0),
    ];
    let categorical = [
        ("Month", "Mar"),
        ("TrafficType", "2"),
        ("VisitorType", "New_Visitor"),
    ];
    (
        numeric.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        categorical
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// An independent re-implementation of the model file's arithmetic.
fn by_hand(file: &ModelFile, num: &HashMap<String, f64>, cat: &HashMap<String, String>) -> f64 {
    let mut z = file.intercept;
    for t in &file.terms {
        let mut x = match &t.category {
            Some(level) => f64::from(u8::from(cat[&t.feature] == *level)),
            None => num[&t.feature],
        };
        for tr in &t.transforms {
            x = match *tr {
                Transform::Clip { lo, hi } => x.clamp(lo, hi),
                Transform::Log1p => x.max(0.0).ln_1p(),
                Transform::Standardise { mean, std } => (x - mean) / std,
                Transform::OneHot { value } => f64::from(u8::from(x == value)),
            };
        }
        z += t.coef * x;
    }
    1.0 / (1.0 + (-z).exp())
}

fn request(id: &str, num: HashMap<String, f64>, cat: HashMap<String, String>) -> pb::DecideRequest {
    pb::DecideRequest {
        session_id: id.into(),
        features: num,
        categorical_features: cat,
        ..Default::default()
    }
}

#[tokio::test]
async fn uci_model_is_served_through_client_features() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(MODEL);
    let file = ModelFile::load(&path).expect("models/uci_online_shoppers.json loads");
    let model = Model::load(&path).unwrap();
    assert_eq!(model.input(), nudge::domain::model::Input::Client);
    let (num, cat) = row();
    let want = by_hand(&file, &num, &cat);
    let direct = model
        .score(
            &nudge::domain::features::Features([0.0; nudge::domain::features::N_FEATURES]),
            &nudge::domain::model::ClientFeatures {
                numeric: num.clone(),
                categorical: cat.clone(),
            },
        )
        .unwrap()
        .probability;
    assert!((direct - want).abs() < 1e-12, "{direct} vs {want}");
    assert!(
        (want - PREDICTED).abs() < 1e-9,
        "{want} vs nudge-train predict {PREDICTED}: was the model retrained?"
    );
    // A buyer with a high page value: the model must see it.
    assert!(want > 0.5, "{want}");

    let settings = RawConfig::from_toml("").unwrap().validate().unwrap();
    let clock = Arc::new(ManualClock::new(1_795_341_600_000));
    let engine = Arc::new(app::memory_engine(
        &settings,
        model,
        clock as Arc<dyn Clock>,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app::run(listener, engine, async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    let mut client = OffersClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    let r = client
        .decide(request("uci-1", num.clone(), cat.clone()))
        .await
        .expect("decide")
        .into_inner();
    assert!(
        (r.purchase_probability - want).abs() < 1e-9,
        "served {} vs trainer {want}",
        r.purchase_probability
    );
    assert_eq!(r.model_version, file.version);

    // An unseen category is the reference level, not an error.
    let mut cat2 = cat.clone();
    cat2.insert("Month".into(), "Smarch".into());
    let r = client
        .decide(request("uci-2", num.clone(), cat2.clone()))
        .await
        .expect("unseen category is accepted")
        .into_inner();
    assert!((r.purchase_probability - by_hand(&file, &num, &cat2)).abs() < 1e-9);

    // Missing numeric feature.
    let mut missing = num.clone();
    missing.remove("PageValues");
    let e = client
        .decide(request("uci-3", missing, cat.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("features[PageValues]"),
        "{}",
        e.message()
    );

    // Unknown (misspelt) feature.
    let mut extra = num.clone();
    extra.insert("PageValue".into(), 1.0);
    let e = client
        .decide(request("uci-4", extra, cat.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("features[PageValue]"),
        "{}",
        e.message()
    );

    // Missing categorical feature.
    let mut nocat = cat.clone();
    nocat.remove("VisitorType");
    let e = client
        .decide(request("uci-5", num, nocat))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("categorical_features[VisitorType]"),
        "{}",
        e.message()
    );

    let _ = tx.send(());
    handle.await.unwrap();
}
