//! Why a load is in a state, as the plan, the status and the history say.

use delestage_proto::vocabulary::ReasonKind;

use crate::model::{SignalLevel, TempoColor};

/// Why a load is in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reason {
    /// Nothing to shed.
    Normal,
    /// The hour's level is at or above the load's `shed_at`.
    ShedForLevel(SignalLevel),
    /// A tense hour (of this level) starts within the load's `anticipate`.
    Anticipation(SignalLevel),
    /// In the peak hours of a Tempo day of this colour.
    ShedForTempo(TempoColor),
    /// The peak hours of a Tempo day of this colour start within the load's
    /// `anticipate`.
    TempoAnticipation(TempoColor),
    /// A person's override.
    Override,
    /// No usable forecast for this time: the load's fallback.
    ForecastUnknown,
    /// Kept powered until its minimum on time has passed.
    MinOnHold,
    /// Kept cut until its minimum off time has passed.
    MinOffHold,
    /// Waiting for its turn to be restored.
    RestoreStagger,
    /// Powered after being cut for its `max_off`, for at least its
    /// `min_on` (30 min if that is shorter).
    ComfortLimit,
    /// Powered for its daily runtime.
    ScheduledRun,
    /// Cut, with daily runtime left for later in the day.
    WaitingForBestHours,
    /// Cut: nothing left of its daily runtime today.
    BudgetMet,
    /// Held cut for the restore jitter after a tense period.
    RestoreJitter,
    /// Cut now for the subscribed power (`[power]`, `shed_on_power`).
    PowerLimit,
}

impl Reason {
    /// Its kind, whose name is the one every output uses.
    pub(crate) fn kind(self) -> ReasonKind {
        match self {
            Reason::Normal => ReasonKind::Normal,
            Reason::ShedForLevel(_) => ReasonKind::ShedForLevel,
            Reason::Anticipation(_) | Reason::TempoAnticipation(_) => ReasonKind::Anticipation,
            Reason::ShedForTempo(_) => ReasonKind::ShedForTempo,
            Reason::Override => ReasonKind::Override,
            Reason::ForecastUnknown => ReasonKind::ForecastUnknown,
            Reason::MinOnHold => ReasonKind::MinOnHold,
            Reason::MinOffHold => ReasonKind::MinOffHold,
            Reason::RestoreStagger => ReasonKind::RestoreStagger,
            Reason::ComfortLimit => ReasonKind::ComfortLimit,
            Reason::ScheduledRun => ReasonKind::ScheduledRun,
            Reason::WaitingForBestHours => ReasonKind::WaitingForBestHours,
            Reason::BudgetMet => ReasonKind::BudgetMet,
            Reason::RestoreJitter => ReasonKind::RestoreJitter,
            Reason::PowerLimit => ReasonKind::PowerLimit,
        }
    }

    /// A kind and the level or colour beside it, back into a reason; `None`
    /// for a shed without what caused it.
    pub(crate) fn from_kind(
        kind: ReasonKind,
        level: Option<SignalLevel>,
        color: Option<TempoColor>,
    ) -> Option<Self> {
        Some(match kind {
            ReasonKind::Normal => Reason::Normal,
            ReasonKind::ShedForLevel => Reason::ShedForLevel(level?),
            ReasonKind::Anticipation => match (level, color) {
                (Some(level), _) => Reason::Anticipation(level),
                (None, color) => Reason::TempoAnticipation(color?),
            },
            ReasonKind::ShedForTempo => Reason::ShedForTempo(color?),
            ReasonKind::Override => Reason::Override,
            ReasonKind::ForecastUnknown => Reason::ForecastUnknown,
            ReasonKind::MinOnHold => Reason::MinOnHold,
            ReasonKind::MinOffHold => Reason::MinOffHold,
            ReasonKind::RestoreStagger => Reason::RestoreStagger,
            ReasonKind::ComfortLimit => Reason::ComfortLimit,
            ReasonKind::ScheduledRun => Reason::ScheduledRun,
            ReasonKind::WaitingForBestHours => Reason::WaitingForBestHours,
            ReasonKind::BudgetMet => Reason::BudgetMet,
            ReasonKind::RestoreJitter => Reason::RestoreJitter,
            ReasonKind::PowerLimit => Reason::PowerLimit,
        })
    }

    /// The level behind a shed, if any.
    pub(crate) fn level(self) -> Option<SignalLevel> {
        match self {
            Reason::ShedForLevel(l) | Reason::Anticipation(l) => Some(l),
            _ => None,
        }
    }

    /// Whether it is a cut one of the load's signals asks for (a tense
    /// hour, a Tempo peak, or the anticipation of either).
    pub(crate) fn is_signal_cut(self) -> bool {
        matches!(
            self,
            Reason::ShedForLevel(_)
                | Reason::Anticipation(_)
                | Reason::ShedForTempo(_)
                | Reason::TempoAnticipation(_)
        )
    }

    /// The Tempo colour behind a shed, if any.
    pub(crate) fn tempo_color(self) -> Option<TempoColor> {
        match self {
            Reason::ShedForTempo(c) | Reason::TempoAnticipation(c) => Some(c),
            _ => None,
        }
    }
}
