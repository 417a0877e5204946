//! The "Daily runtime:" block of `status` and `plan`: one line per
//! `run_daily` load (the line itself is shared with the JSON:
//! [`delestage_proto::json::budget_line`]).

use delestage_proto::controller::v1 as cpb;
use delestage_proto::json::budget_line;

/// A "Daily runtime:" block with a line per budgeted load; empty when
/// there is none.
pub(crate) fn section<'a>(
    loads: impl Iterator<Item = (&'a str, Option<&'a cpb::DailyBudget>)>,
) -> String {
    let lines: Vec<String> = loads
        .filter_map(|(name, b)| Some(format!("  {}\n", budget_line(name, b?))))
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    format!("\nDaily runtime:\n{}", lines.concat())
}
