//! The client commands: ask a service, print its answer as text or JSON.

use cpb::controller_service_client::ControllerServiceClient;
use delestage_proto::controller::v1 as cpb;
use delestage_proto::forecast::v1 as fpb;
use delestage_proto::relay::v1 as rpb;
use fpb::forecast_service_client::ForecastServiceClient;
use jiff::Timestamp;
use rpb::relay_service_client::RelayServiceClient;
use serde_json::{Value, json};

use crate::args::{Endpoints, HistoryArgs, OnOff, OverrideArgs, OverrideClear};
use crate::connect::{CliError, Credentials, Service, connect};
use crate::render::{self, Clock, Paint};

/// How to print.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub json: bool,
    pub paint: Paint,
    /// The zone times are shown in (`--tz`).
    pub tz: jiff::tz::TimeZone,
}

impl Output {
    /// Now, where the reader is.
    fn clock(&self) -> Clock {
        Clock::new(Timestamp::now(), self.tz.clone())
    }

    /// The text (with the zone named when it is not Paris's), or the JSON.
    fn print(&self, text: impl FnOnce() -> String, json: impl FnOnce() -> Value) {
        if self.json {
            println!("{}", json());
        } else {
            print!("{}", text());
            if let Some(zone) = self.clock().other_zone() {
                println!("(times in {zone})");
            }
        }
    }
}

async fn controller(
    e: &Endpoints,
) -> Result<ControllerServiceClient<delestage_runtime::client::AuthedChannel>, CliError> {
    Ok(ControllerServiceClient::new(
        connect(
            Service::Controller,
            &e.controller,
            &Credentials::from_args(e),
        )
        .await?,
    ))
}

pub(crate) async fn status(e: &Endpoints, out: Output) -> Result<(), CliError> {
    let status = controller(e)
        .await?
        .get_status(cpb::GetStatusRequest {})
        .await
        .map_err(|s| Service::Controller.error(&e.controller, s))?
        .into_inner()
        .status
        .unwrap_or_default();
    out.print(
        || render::status_text(&status, out.paint, &out.clock()),
        || render::status_json(&status),
    );
    Ok(())
}

pub(crate) async fn plan(e: &Endpoints, load: Option<String>, out: Output) -> Result<(), CliError> {
    let plan = controller(e)
        .await?
        .get_plan(cpb::GetPlanRequest { load })
        .await
        .map_err(|s| Service::Controller.error(&e.controller, s))?
        .into_inner();
    // For the colours and the Tempo peak hours only: without the
    // forecast-service the timeline is still right, just grey.
    let (hours, tempo) =
        match connect(Service::Forecast, &e.forecast, &Credentials::from_args(e)).await {
            Ok(channel) => {
                let mut client = ForecastServiceClient::new(channel);
                let hours = if out.json {
                    Vec::new()
                } else {
                    client
                        .get_forecast(fpb::GetForecastRequest {})
                        .await
                        .map(|f| f.into_inner().hours)
                        .unwrap_or_default()
                };
                let tempo = client
                    .get_tempo(fpb::GetTempoRequest {})
                    .await
                    .map(|t| t.into_inner().days)
                    .unwrap_or_default();
                (hours, tempo)
            }
            Err(_) => (Vec::new(), Vec::new()),
        };
    out.print(
        || render::plan_text(&plan, &hours, &tempo, out.paint, &out.clock()),
        || render::plan_json(&plan, &tempo),
    );
    Ok(())
}

pub(crate) async fn forecast(e: &Endpoints, out: Output) -> Result<(), CliError> {
    let channel = connect(Service::Forecast, &e.forecast, &Credentials::from_args(e)).await?;
    let mut client = ForecastServiceClient::new(channel);
    let f = client
        .get_forecast(fpb::GetForecastRequest {})
        .await
        .map_err(|s| Service::Forecast.error(&e.forecast, s))?
        .into_inner();
    // Tempo is optional at the service: say why it is missing, if it is.
    let tempo = client
        .get_tempo(fpb::GetTempoRequest {})
        .await
        .map(|t| t.into_inner())
        .map_err(|s| s.message().to_owned());
    out.print(
        || render::forecast_text(&f, &tempo, out.paint, &out.clock()),
        || render::forecast_json(&f, &tempo),
    );
    Ok(())
}

async fn relay(
    e: &Endpoints,
) -> Result<RelayServiceClient<delestage_runtime::client::AuthedChannel>, CliError> {
    Ok(RelayServiceClient::new(
        connect(Service::Relay, &e.relay, &Credentials::from_args(e)).await?,
    ))
}

pub(crate) async fn relays(e: &Endpoints, out: Output) -> Result<(), CliError> {
    let r = relay(e)
        .await?
        .get_relays(rpb::GetRelaysRequest {})
        .await
        .map_err(|s| Service::Relay.error(&e.relay, s))?
        .into_inner();
    out.print(
        || render::relays_text(&r, out.paint, &out.clock()),
        || render::relays_json(&r),
    );
    Ok(())
}

pub(crate) async fn meter(e: &Endpoints, out: Output) -> Result<(), CliError> {
    let channel = connect(Service::Relay, &e.relay, &Credentials::from_args(e)).await?;
    let r = delestage_proto::meter::v1::meter_service_client::MeterServiceClient::new(channel)
        .get_meter(delestage_proto::meter::v1::GetMeterRequest {})
        .await
        .map_err(|s| Service::Relay.error(&e.relay, s))?
        .into_inner();
    out.print(
        || render::meter_text(&r, out.paint, &out.clock()),
        || render::meter_json(&r),
    );
    Ok(())
}

pub(crate) async fn relay_set(
    e: &Endpoints,
    channel: u32,
    state: OnOff,
    out: Output,
) -> Result<(), CliError> {
    let answer = relay(e)
        .await?
        .set_relay(rpb::SetRelayRequest {
            channel,
            energized: state.is_on(),
        })
        .await
        .map_err(|s| Service::Relay.error(&e.relay, s))?
        .into_inner();
    out.print(
        || {
            format!(
                "relay {channel} is {}{}\n",
                if state.is_on() { "on" } else { "off" },
                if answer.switched {
                    ""
                } else {
                    " (it already was)"
                }
            )
        },
        || {
            json!({
                "relay": answer.relay.as_ref().map(render::relay_json),
                "switched": answer.switched,
            })
        },
    );
    Ok(())
}

pub(crate) async fn override_(
    e: &Endpoints,
    args: OverrideArgs,
    out: Output,
) -> Result<(), CliError> {
    let mut client = controller(e).await?;
    if let Some(OverrideClear::Clear { load }) = args.clear {
        let cleared = client
            .clear_override(cpb::ClearOverrideRequest { load: load.clone() })
            .await
            .map_err(|s| Service::Controller.error(&e.controller, s))?
            .into_inner()
            .cleared;
        out.print(
            || {
                if cleared {
                    format!("{load}: override cleared; the plan applies again\n")
                } else {
                    format!("{load} had no override\n")
                }
            },
            || json!({ "load": load, "cleared": cleared }),
        );
        return Ok(());
    }
    let (Some(load), Some(state)) = (args.load, args.state) else {
        return Err(CliError::Usage(
            "usage: delestage override LOAD on|off --for DURATION, or delestage override clear LOAD".to_owned(),
        ));
    };
    let until = match (args.for_, args.until) {
        (_, Some(text)) => text.parse::<Timestamp>().map_err(|err| {
            CliError::Usage(format!(
                "--until {text:?}: {err} (write e.g. 2026-12-08T20:00:00+01:00)"
            ))
        })?,
        (Some(d), None) => {
            let d = jiff::SignedDuration::try_from(d)
                .map_err(|err| CliError::Usage(format!("--for: {err}")))?;
            Timestamp::now()
                .checked_add(d)
                .map_err(|err| CliError::Usage(format!("--for: {err}")))?
        }
        (None, None) => {
            return Err(CliError::Usage(
                "give --for DURATION or --until TIME".to_owned(),
            ));
        }
    };
    let o = client
        .set_override(cpb::SetOverrideRequest {
            load: load.clone(),
            powered: state.is_on(),
            until: Some(delestage_proto::time::to_pb(until)),
            force: args.force,
        })
        .await
        .map_err(|s| Service::Controller.error(&e.controller, s))?
        .into_inner()
        .r#override
        .unwrap_or_default();
    out.print(
        || {
            format!(
                "{load}: forced {} until {}\n",
                if o.powered { "on" } else { "off" },
                render::time(o.until.as_ref()).map_or("?".to_owned(), |t| out.clock().show(t))
            )
        },
        || json!({ "override": render::override_json(&o) }),
    );
    Ok(())
}

pub(crate) async fn history(e: &Endpoints, args: HistoryArgs, out: Output) -> Result<(), CliError> {
    let since = match args.since {
        Some(d) => {
            let d = jiff::SignedDuration::try_from(d)
                .map_err(|err| CliError::Usage(format!("--since: {err}")))?;
            let t = Timestamp::now()
                .checked_sub(d)
                .map_err(|err| CliError::Usage(format!("--since: {err}")))?;
            Some(delestage_proto::time::to_pb(t))
        }
        None => None,
    };
    let records = controller(e)
        .await?
        .get_history(cpb::GetHistoryRequest {
            load: args.load.unwrap_or_default(),
            since,
            limit: args.limit,
        })
        .await
        .map_err(|s| Service::Controller.error(&e.controller, s))?
        .into_inner()
        .records;
    out.print(
        || render::history_text(&records, out.paint, &out.clock()),
        || json!({ "records": records.iter().map(render::record_json).collect::<Vec<_>>() }),
    );
    Ok(())
}

/// `token new`: a fresh token and its tokens-file line.
pub(crate) fn token_new(
    role: delestage_runtime::security::Role,
    name: Option<&str>,
    out: Output,
) -> Result<(), CliError> {
    let new = delestage_runtime::tokens::NewToken::generate(role, name)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    if !out.json {
        // For people; stdout stays two lines for scripts.
        eprintln!(
            "The token (first line) is shown only this once: give it to the client \
             (a --token-file, DELESTAGE_TOKEN, or `authorization: Bearer TOKEN`).\n\
             Add the second line to the tokens file of each service it may call."
        );
    }
    out.print(
        || format!("{}\n{}\n", new.token, new.line),
        || {
            json!({
                "token": new.token,
                "role": role.name(),
                "name": name.unwrap_or_default(),
                "tokens_file_line": new.line,
            })
        },
    );
    Ok(())
}

pub(crate) async fn health(url: &str, service: &str, out: Output) -> Result<(), CliError> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = connect(Service::Any, url, &Credentials::none()).await?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|s| Service::Any.error(url, s))?
        .into_inner();
    let status = answer.status();
    out.print(
        || format!("{}\n", status.as_str_name()),
        || json!({ "url": url, "service": service, "status": status.as_str_name() }),
    );
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(CliError::NotServing(status.as_str_name().to_owned()))
    }
}
