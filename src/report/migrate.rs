use std::io::{self, Write};

use super::ci::{CiItem, CiSeverity, cell};
use super::{Grid, Render, Screen, hanging, millis, paragraph};
use crate::db::IdType;
use crate::migrate::history::StepState;
use crate::migrate::steps::{Phase, STEPS, StepKind};
use crate::migrate::{
    ApplyOutcome, ApplyReport, DownReport, MigrateOutput, MigratePlan, PlannedStep,
    PreflightReport, StatusReport,
};

impl serde::Serialize for MigrateOutput {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MigrateOutput::Plan(r) => r.serialize(serializer),
            MigrateOutput::Status(r) => r.serialize(serializer),
            MigrateOutput::Apply(r) => r.serialize(serializer),
            MigrateOutput::Down(r) => r.serialize(serializer),
        }
    }
}

impl Render for MigrateOutput {
    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        match self {
            MigrateOutput::Plan(r) => r.render_table(out, screen),
            MigrateOutput::Status(r) => r.render_table(out, screen),
            MigrateOutput::Apply(r) => r.render_table(out, screen),
            MigrateOutput::Down(r) => r.render_table(out, screen),
        }
    }

    fn markdown_lines(&self) -> Option<Vec<String>> {
        match self {
            MigrateOutput::Plan(r) => r.markdown_lines(),
            MigrateOutput::Status(r) => r.markdown_lines(),
            MigrateOutput::Apply(_) | MigrateOutput::Down(_) => None,
        }
    }

    fn ci_items(&self) -> Option<Vec<CiItem>> {
        match self {
            MigrateOutput::Status(r) => r.ci_items(),
            MigrateOutput::Plan(_) | MigrateOutput::Apply(_) | MigrateOutput::Down(_) => None,
        }
    }
}

/// The plan's steps of one phase as a markdown table: what a reviewer of a deploy reads.
fn markdown_steps(lines: &mut Vec<String>, heading: &str, steps: &[PlannedStep]) {
    if steps.is_empty() {
        return;
    }
    lines.push(format!("#### {heading}"));
    lines.push(String::new());
    lines.push("| step | kind | lock | blocks writes | rows | hazards |".to_owned());
    lines.push("|---|---|---|---|---:|---|".to_owned());
    for step in steps {
        lines.push(format!(
            "| `{}` | {} | {} {} | {} | {} | {} |",
            step.name,
            kind_name(step.kind),
            step.lock.name(),
            step.table,
            if step.blocks_writes { "**yes**" } else { "no" },
            rows_text(step.rows_touched_estimate),
            cell(&step.hazards.join("; "))
        ));
    }
    lines.push(String::new());
}

fn kind_name(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Transactional => "transaction",
        StepKind::Validation => "validation",
        StepKind::ConcurrentIndex { .. } => "concurrent index",
        StepKind::Batched => "batched update",
        StepKind::ConcurrentDrop { .. } => "concurrent drop",
    }
}

fn timeout_text(ms: Option<u64>) -> String {
    match ms {
        None | Some(0) => "none".to_owned(),
        Some(ms) => millis(ms),
    }
}

fn rows_text(rows: Option<i64>) -> String {
    rows.map_or_else(|| "unknown".to_owned(), crate::human::count)
}

impl Render for MigratePlan {
    fn markdown_lines(&self) -> Option<Vec<String>> {
        let mut lines = vec![
            "### paytool migrate plan".to_owned(),
            String::new(),
            format!(
                "{} of {} steps applied on `{}`: {} for paytool migrate, {} for paytool backfill payments, {} for paytool migrate cleanup.",
                self.steps_applied,
                self.steps_total,
                self.database,
                self.pending.len(),
                self.after_backfill.len(),
                self.cleanup.len()
            ),
            String::new(),
        ];
        markdown_steps(&mut lines, "paytool migrate", &self.pending);
        markdown_steps(
            &mut lines,
            "paytool backfill payments (after its first complete pass)",
            &self.after_backfill,
        );
        markdown_steps(
            &mut lines,
            "paytool migrate cleanup (once the legacy application is gone)",
            &self.cleanup,
        );
        if !self.preflight.findings.is_empty() {
            lines.push("#### Preflight: data the migration would fail on".to_owned());
            lines.push(String::new());
            lines.push("| check | rows | problem | fix |".to_owned());
            lines.push("|---|---:|---|---|".to_owned());
            for f in &self.preflight.findings {
                lines.push(format!(
                    "| `{}` | {} | {} | {} |",
                    f.check,
                    f.offending_rows,
                    cell(f.problem),
                    cell(f.fix)
                ));
            }
        }
        Some(lines)
    }

    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        writeln!(out, "Migration plan for {}", self.database)?;
        paragraph(
            out,
            screen,
            &format!(
                "{} of {} steps applied, {} pending for paytool migrate, {} for paytool backfill \
                 payments, {} for paytool migrate cleanup.",
                self.steps_applied,
                self.steps_total,
                self.pending.len(),
                self.after_backfill.len(),
                self.cleanup.len()
            ),
        )?;
        writeln!(out)?;
        if self.id_type == IdType::Uuid {
            writeln!(
                out,
                "The legacy ids are uuid (@db.Uuid): payments.order_id is created as uuid.\n"
            )?;
        }
        if !self.overridden_timeouts.is_empty() {
            let set: Vec<String> = self
                .overridden_timeouts
                .iter()
                .map(|(name, value)| format!("{name} = {value}"))
                .collect();
            paragraph(
                out,
                screen,
                &format!(
                    "This role or database sets {}: paytool's sessions override it (to none), and each step below runs under the limits shown for it.",
                    set.join(", ")
                ),
            )?;
            writeln!(out)?;
        }
        if self.pending.is_empty() && self.after_backfill.is_empty() && self.cleanup.is_empty() {
            writeln!(out, "Nothing to do: the schema is up to date.")?;
            return Ok(());
        }
        if !self.pending.is_empty() {
            writeln!(out, "paytool migrate:")?;
            render_steps(&self.pending, self.show_sql, screen, out)?;
        }
        if !self.after_backfill.is_empty() {
            paragraph(
                out,
                screen,
                "paytool backfill payments (once its first pass is complete; built earlier, these \
                 indexes would make that pass's updates ineligible for HOT):",
            )?;
            render_steps(&self.after_backfill, self.show_sql, screen, out)?;
        }
        if !self.cleanup.is_empty() {
            paragraph(
                out,
                screen,
                "paytool migrate cleanup (only once no instance of the legacy application runs):",
            )?;
            render_steps(&self.cleanup, self.show_sql, screen, out)?;
        }
        render_preflight(&self.preflight, screen, out)
    }
}

fn render_steps(
    steps: &[PlannedStep],
    show_sql: bool,
    screen: Screen,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut t = Grid::new(&[
        "step",
        "kind",
        "lock (table)",
        "blocks writes",
        "rows touched",
        "lock / statement timeout",
    ])
    .prose(&[
        "kind",
        "lock (table)",
        "blocks writes",
        "rows touched",
        "lock / statement timeout",
    ])
    // The section of each step below names its kind, rows and timeouts again.
    .optional(&[
        "lock / statement timeout",
        "rows touched",
        "kind",
        "blocks writes",
    ]);
    for step in steps {
        t.add_row(vec![
            step.name.to_owned(),
            kind_name(step.kind).to_owned(),
            format!("{} ({})", step.lock.name(), step.table),
            if step.blocks_writes {
                "yes, ms".to_owned()
            } else {
                "no".to_owned()
            },
            rows_text(step.rows_touched_estimate),
            format!(
                "{} / {}",
                timeout_text(Some(step.lock_timeout_ms)),
                timeout_text(step.statement_timeout_ms)
            ),
        ]);
    }
    writeln!(out, "{}", t.render(screen).with_hint())?;
    for step in steps {
        writeln!(out, "\n{} — {}", step.name, kind_name(step.kind))?;
        for hazard in &step.hazards {
            hanging(out, screen, "  ! ", hazard)?;
        }
        if show_sql {
            for line in step.sql.trim_end().lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    writeln!(out)
}

fn render_preflight(
    preflight: &PreflightReport,
    screen: Screen,
    out: &mut dyn Write,
) -> io::Result<()> {
    if preflight.passed() {
        writeln!(
            out,
            "Preflight: {} check(s) passed.",
            preflight.checks_run.len()
        )?;
        return Ok(());
    }
    // The cleanup's findings are uses of the enum type, not rows of data.
    let guards_cleanup = |version: i32| {
        STEPS
            .iter()
            .any(|s| s.version == version && s.phase == Phase::Cleanup)
    };
    let (heading, unit) = if preflight
        .findings
        .iter()
        .all(|f| guards_cleanup(f.guards_step))
    {
        ("the legacy enum type is still in use", "found")
    } else {
        ("in the data would break the new constraints", "row(s)")
    };
    writeln!(
        out,
        "Preflight: {} problem(s) {heading}:",
        preflight.findings.len()
    )?;
    for finding in &preflight.findings {
        writeln!(out)?;
        hanging(
            out,
            screen,
            "  ✗ ",
            &format!(
                "{} — {} {unit}: {}",
                finding.check, finding.offending_rows, finding.problem
            ),
        )?;
        for sample in &finding.sample {
            hanging(out, screen, "      ", sample)?;
        }
        if finding.offending_rows > finding.sample.len() as i64 {
            writeln!(
                out,
                "      … and {} more",
                finding.offending_rows - finding.sample.len() as i64
            )?;
        }
        hanging(out, screen, "    fix: ", finding.fix)?;
    }
    writeln!(out)
}

impl StatusReport {
    fn counts_line(&self) -> String {
        format!(
            "{} applied, {} pending, {} interrupted, {} drifted; {} left to paytool backfill payments, \
             {} cleanup step(s) pending.",
            self.applied,
            self.pending,
            self.interrupted,
            self.drift,
            self.after_backfill_pending,
            self.cleanup_pending,
        )
    }
}

impl Render for StatusReport {
    fn markdown_lines(&self) -> Option<Vec<String>> {
        let mut lines = vec![
            "### paytool migrate status".to_owned(),
            String::new(),
            format!("`{}`: {}", self.database, self.counts_line()),
        ];
        let attention: Vec<String> = self
            .ci_items()
            .unwrap_or_default()
            .into_iter()
            .map(|item| format!("- {}: {}", item.title, item.message))
            .collect();
        if !attention.is_empty() {
            lines.push(String::new());
            lines.extend(attention);
        }
        Some(lines)
    }

    /// What fails the status: drift, interrupted steps, and steps of paytool migrate not
    /// applied (the cleanup's and the backfill's wait normally, and are not shown).
    fn ci_items(&self) -> Option<Vec<CiItem>> {
        Some(
            self.steps
                .iter()
                .filter_map(|step| {
                    let message = match step.state {
                        StepState::Drift => {
                            "applied with other SQL than this paytool's: find out who changed it"
                        }
                        StepState::Interrupted => {
                            "started and not finished: paytool migrate redoes it"
                        }
                        StepState::Pending if step.phase == Phase::Migrate => {
                            "not applied: run paytool migrate"
                        }
                        _ => return None,
                    };
                    Some(CiItem {
                        severity: CiSeverity::Error,
                        check: format!("migrate_{}", step.state.as_str()),
                        title: format!(
                            "paytool migrate status: {} {}",
                            step.name,
                            step.state.as_str()
                        ),
                        message: message.to_owned(),
                        identity: format!("migrate|{}|{}", step.name, step.state.as_str()),
                        path: format!("sql/migrations/{}.sql", step.name),
                    })
                })
                .collect(),
        )
    }

    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        writeln!(out, "Migration status of {}", self.database)?;
        let mut t = Grid::new(&["step", "state", "checksum", "applied at", "took"])
            .prose(&["state", "applied at"])
            .optional(&["took", "applied at", "checksum"]);
        for step in &self.steps {
            let checksum = match &step.applied_checksum {
                Some(applied) if applied != &step.checksum => {
                    format!(
                        "applied {} ≠ embedded {}",
                        &applied[..applied.len().min(12)],
                        &step.checksum[..12]
                    )
                }
                _ => step.checksum[..12].to_owned(),
            };
            let mut state = step.state.as_str().to_owned();
            match step.phase {
                Phase::Cleanup => state.push_str(" (cleanup)"),
                Phase::AfterBackfill => state.push_str(" (by backfill)"),
                Phase::Migrate => {}
            }
            t.add_row(vec![
                step.name.to_owned(),
                state,
                checksum,
                step.applied_at
                    .map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default(),
                step.execution_ms
                    .map(|ms| millis(ms as u64))
                    .unwrap_or_default(),
            ]);
        }
        writeln!(out, "{}", t.render(screen).with_hint())?;
        paragraph(out, screen, &self.counts_line())?;
        if let Some(holder) = &self.running {
            paragraph(
                out,
                screen,
                &format!(
                    "A paytool migrate is running now ({holder}): the step marked running is its."
                ),
            )?;
        } else if self.pending + self.interrupted > 0 && self.drift == 0 {
            writeln!(out, "Run paytool migrate to apply the pending steps.")?;
        } else if self.drift == 0 {
            if self.after_backfill_pending > 0 {
                paragraph(
                    out,
                    screen,
                    &format!(
                        "Migrated. paytool backfill payments builds the {} partial index(es) left once \
                         its first pass is complete.",
                        self.after_backfill_pending,
                    ),
                )?;
            }
            if self.cleanup_pending > 0 {
                paragraph(
                    out,
                    screen,
                    "Migrated. paytool migrate cleanup removes the legacy enum type once the legacy \
                     application is gone.",
                )?;
            }
        }
        if self.drift > 0 {
            paragraph(
                out,
                screen,
                "Drift: the SQL recorded for these steps differs from the SQL in this paytool; \
                 find out who changed the schema or the migration files before going on.",
            )?;
        }
        Ok(())
    }
}

impl Render for ApplyReport {
    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        if self.waited_for_other_run_ms > 1000 {
            paragraph(
                out,
                screen,
                &format!(
                    "Waited {} for another paytool migrate to finish.",
                    millis(self.waited_for_other_run_ms),
                ),
            )?;
        }
        match self.outcome {
            ApplyOutcome::UpToDate => {
                paragraph(
                    out,
                    screen,
                    &format!(
                        "Nothing to do: every step of {} is already applied to {}.",
                        self.phase.command(),
                        self.database,
                    ),
                )?;
                self.render_next_step(screen, out)
            }
            ApplyOutcome::RefusedInUse => {
                render_preflight(&self.preflight, screen, out)?;
                paragraph(
                    out,
                    screen,
                    "Nothing was changed: the legacy enum type is still in use. Run paytool migrate \
                     cleanup again once it is not.",
                )
            }
            ApplyOutcome::RefusedDirtyData => {
                render_preflight(&self.preflight, screen, out)?;
                paragraph(
                    out,
                    screen,
                    "Nothing was changed. Fix these rows, then run paytool migrate again.",
                )
            }
            ApplyOutcome::RefusedDrift => {
                let mut t = Grid::new(&["step", "applied checksum", "embedded checksum"]);
                for step in &self.drift {
                    t.add_row(vec![
                        step.name.to_owned(),
                        step.applied_checksum.clone().unwrap_or_default(),
                        step.checksum.clone(),
                    ]);
                }
                paragraph(
                    out,
                    screen,
                    "Refused: applied steps differ from the SQL embedded in this paytool (drift):",
                )?;
                writeln!(out, "{}", t.render(screen).with_hint())?;
                writeln!(out, "Nothing was changed.")
            }
            ApplyOutcome::Applied => {
                let mut t = Grid::new(&["step", "kind", "took", "lock retries", "rows", "note"])
                    .prose(&["kind", "note"])
                    .optional(&["lock retries", "kind"]);
                for step in &self.steps {
                    t.add_row(vec![
                        step.name.to_owned(),
                        kind_name(step.kind).to_owned(),
                        millis(step.duration_ms),
                        step.retries.to_string(),
                        step.rows_changed
                            .map(crate::human::count)
                            .unwrap_or_default(),
                        step.detail.clone().unwrap_or_default(),
                    ]);
                }
                writeln!(out, "{}", t.render(screen).with_hint())?;
                paragraph(
                    out,
                    screen,
                    &format!(
                        "Applied {} step(s) to {} in {}.",
                        self.steps.len(),
                        self.database,
                        millis(self.duration_ms),
                    ),
                )?;
                self.render_next_step(screen, out)
            }
        }
    }
}

impl ApplyReport {
    /// What the operator does next, once `paytool migrate` is done.
    fn render_next_step(&self, screen: Screen, out: &mut dyn Write) -> io::Result<()> {
        if self.phase == Phase::Migrate {
            paragraph(
                out,
                screen,
                "Next: deploy the application built for the new schema (paytool prisma schema); once no \
                 instance of the legacy one runs, paytool migrate cleanup drops the old enum type.",
            )?;
        }
        Ok(())
    }
}

impl Render for DownReport {
    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        paragraph(
            out,
            screen,
            &format!(
                "Rolled {} back to the legacy schema in {}.",
                self.database,
                millis(self.duration_ms),
            ),
        )?;
        for (table, rows) in &self.destroyed_rows {
            writeln!(
                out,
                "  destroyed {} row(s) of {table}",
                crate::human::count(*rows)
            )?;
        }
        Ok(())
    }
}
