use crate::util::*;
use nudge::grpc::pb::{self, PageKind};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test]
async fn health_reports_serving() {
    let s = start(settings(""), default_model()).await;
    let mut h = HealthClient::new(s.channel().await);
    for service in ["", "nudge.v1.Offers"] {
        let r = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_offers_service() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let s = start(settings(""), default_model()).await;
    let mut c = ServerReflectionClient::new(s.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = c
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected {msg:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"nudge.v1.Offers"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    s.stop().await;
}

#[tokio::test]
async fn idle_session_expires_after_the_ttl() {
    let s = start(
        settings("[sessions]\nidle_ttl_secs = 60\n"),
        default_model(),
    )
    .await;
    let mut c = s.client().await;
    let track = |events| pb::TrackRequest {
        session_id: "ttl".into(),
        events,
        ..Default::default()
    };
    let t = c
        .track(track(vec![at_now(page(0, PageKind::Home, 1))]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.session_events, 1);
    s.clock.advance(60_000);
    let t = c
        .track(track(vec![at_now(page(1, PageKind::Home, 1))]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.session_events, 2, "touched within the ttl: still live");
    s.clock.advance(60_001);
    let t = c.track(track(vec![])).await.unwrap().into_inner();
    assert_eq!(t.session_events, 0, "idle past the ttl: a fresh session");
    s.stop().await;
}

#[tokio::test]
async fn shutdown_drains_and_stops() {
    let s = start(settings(""), default_model()).await;
    let addr = s.addr;
    let mut c = s.client().await;
    assert!(c.decide(decide("x", vec![])).await.is_ok());
    s.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}
