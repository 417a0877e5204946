//! The controller in-process, with a client.

use delestage_controller::config::Settings;
use delestage_proto::controller::v1::controller_service_client::ControllerServiceClient;
use tonic::transport::Channel;

use super::{InProcess, any_port};

/// Serves a controller on `127.0.0.1:0` until stopped, and a client to it.
pub async fn serve(
    settings: Settings,
) -> (
    InProcess<delestage_controller::Error>,
    ControllerServiceClient<Channel>,
) {
    let server = InProcess::spawn(any_port().await, |listener, shutdown| {
        delestage_controller::serve(settings, listener, shutdown)
    });
    // The listener is bound: connecting cannot race the server.
    let channel = Channel::from_shared(server.url())
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    (server, ControllerServiceClient::new(channel))
}
