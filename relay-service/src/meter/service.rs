//! The gRPC face of the meter: `delestage.meter.v1.MeterService`.

use delestage_proto::forecast::v1::TempoColor as PbColor;
use delestage_proto::meter::v1 as pb;
use delestage_runtime::stream::{StreamSlots, WatchStream};
use delestage_tic::{Mode, Reading, TempoColor};
use jiff::Timestamp;
use pb::meter_service_server::MeterService;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::MeterView;

pub(crate) struct MeterApi {
    /// `None`: no `--meter`.
    view: Option<watch::Receiver<MeterView>>,
    streams: StreamSlots,
}

impl MeterApi {
    pub(crate) fn new(view: Option<watch::Receiver<MeterView>>, streams: StreamSlots) -> Self {
        Self { view, streams }
    }

    pub(crate) fn into_server(self) -> pb::meter_service_server::MeterServiceServer<Self> {
        pb::meter_service_server::MeterServiceServer::new(self)
            .max_decoding_message_size(delestage_runtime::grpc::MAX_REQUEST_BYTES)
    }

    fn view(&self) -> Result<&watch::Receiver<MeterView>, Status> {
        self.view.as_ref().ok_or_else(|| {
            Status::unavailable("no meter configured (start relay-service with --meter)")
        })
    }
}

#[tonic::async_trait]
impl MeterService for MeterApi {
    async fn get_meter(
        &self,
        _request: Request<pb::GetMeterRequest>,
    ) -> Result<Response<pb::MeterReading>, Status> {
        let view = self.view()?.borrow().clone();
        let (at, reading) = view.fresh(Timestamp::now()).map_err(Status::unavailable)?;
        Ok(Response::new(reading_to_pb(*at, reading, &view)))
    }

    type WatchMeterStream = WatchStream<pb::MeterReading>;

    async fn watch_meter(
        &self,
        _request: Request<pb::WatchMeterRequest>,
    ) -> Result<Response<Self::WatchMeterStream>, Status> {
        let mut view = self.view()?.clone();
        let (sink, stream) = self.streams.open()?;
        // The latest reading, then each new one. While the watcher is slow
        // (`send` waits), readings collapse in the watch: it gets the
        // newest. A frame counted bad changes the view but is no reading.
        tokio::spawn(async move {
            let mut last: Option<Timestamp> = None;
            loop {
                let next = {
                    let v = view.borrow_and_update();
                    v.latest
                        .as_ref()
                        .filter(|(at, _)| last != Some(*at))
                        .map(|(at, r)| (*at, reading_to_pb(*at, r, &v)))
                };
                if let Some((at, reading)) = next {
                    last = Some(at);
                    if !sink.send(reading).await {
                        return;
                    }
                }
                match sink.until(view.changed()).await {
                    Some(Ok(())) => {}
                    None | Some(Err(_)) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

pub(crate) fn reading_to_pb(at: Timestamp, r: &Reading, view: &MeterView) -> pb::MeterReading {
    pb::MeterReading {
        at: Some(delestage_proto::time::to_pb(at)),
        apparent_power_va: r.apparent_power_va,
        subscribed_va: r.subscribed_va,
        tariff_period: r.tariff_period.clone(),
        tempo_today: color_to_pb(r.tempo_today) as i32,
        tempo_tomorrow: color_to_pb(r.tempo_tomorrow) as i32,
        meter_id: r.meter_id.clone(),
        mode: match r.mode {
            Mode::Historic => pb::MeterMode::Historic,
            Mode::Standard => pb::MeterMode::Standard,
        } as i32,
        phase_power_va: r.phase_power_va.clone(),
        injected_va: r.injected_va,
        frames_ok: view.frames_ok,
        frames_bad: view.frames_bad,
    }
}

fn color_to_pb(c: Option<TempoColor>) -> PbColor {
    match c {
        None => PbColor::Unspecified,
        Some(TempoColor::Blue) => PbColor::Blue,
        Some(TempoColor::White) => PbColor::White,
        Some(TempoColor::Red) => PbColor::Red,
    }
}
