//! The one table policy of human output. A table is drawn whole when it fits the screen; on a
//! narrower one, its optional columns go first, then its prose columns wrap between words; if
//! it still does not fit, every row becomes a block of `name: value` lines. No layout ever
//! splits a word, so ids can always be copied whole.

use std::fmt::Write as _;

use comfy_table::{ContentArrangement, Table, presets};
use unicode_width::UnicodeWidthStr;

/// Width of stdout when the report is printed; decides the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screen {
    pub width: usize,
}

impl Screen {
    /// Below this a table is never tried: blocks read better.
    const MIN_WIDTH: usize = 40;

    pub fn new(width: usize) -> Self {
        Screen { width }
    }

    /// A file, a pipe or a CI log without `COLUMNS`: every table whole, no line wrapped.
    pub fn unbounded() -> Self {
        Screen { width: usize::MAX }
    }

    /// The terminal's width; without a terminal, `COLUMNS`, else unbounded.
    pub fn detect() -> Self {
        let terminal = Table::new().width().map(usize::from).filter(|w| *w > 0);
        let columns = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok())
            .filter(|w| *w > 0);
        let width = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            terminal.or(columns)
        } else {
            columns
        };
        width.map_or_else(Screen::unbounded, Screen::new)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    /// One line per cell, no matter what.
    Fixed,
    /// Words of text: may wrap between words.
    Prose,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    fit: Fit,
}

/// A table of human output; [`Grid::render`] picks the layout for the screen.
#[derive(Debug, Clone)]
pub struct Grid {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
    /// Columns that may be left out on a narrow screen, in the order they go.
    drop_order: Vec<String>,
}

/// What [`Grid::render`] drew, and which optional columns it left out.
pub struct Rendered {
    pub text: String,
    pub dropped: Vec<String>,
    screen: Screen,
}

impl Rendered {
    /// The layout, and under it which columns a narrow screen left out and where they are.
    pub fn with_hint(self) -> String {
        if self.dropped.is_empty() {
            return self.text;
        }
        let hint = format!(
            "(left out at this width: {}; a wider terminal or --format json shows them)",
            self.dropped.join(", ")
        );
        let width = self.screen.width.max(Screen::MIN_WIDTH);
        format!("{}\n{}", self.text, wrap(&hint, width).join("\n"))
    }
}

/// Cell padding and borders: `│ a │ b │` is 3 per column plus 1.
fn borders(columns: usize) -> usize {
    3 * columns + 1
}

fn width_of(text: &str) -> usize {
    text.lines().map(UnicodeWidthStr::width).max().unwrap_or(0)
}

fn longest_word(text: &str) -> usize {
    text.split_whitespace()
        .map(UnicodeWidthStr::width)
        .max()
        .unwrap_or(0)
}

/// Wraps `text` between words to at most `width` columns; a word longer than that stays whole
/// on a line of its own.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let needed = if line.is_empty() {
                word.width()
            } else {
                line.width() + 1 + word.width()
            };
            if needed > width && !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

/// Writes a sentence of human output wrapped to the screen, between words.
pub fn paragraph(out: &mut dyn std::io::Write, screen: Screen, text: &str) -> std::io::Result<()> {
    hanging(out, screen, "", text)
}

/// Like [`paragraph`], the first line after `prefix` and the others indented under it.
pub fn hanging(
    out: &mut dyn std::io::Write,
    screen: Screen,
    prefix: &str,
    text: &str,
) -> std::io::Result<()> {
    let indent = " ".repeat(prefix.width());
    let room = screen
        .width
        .max(Screen::MIN_WIDTH)
        .saturating_sub(indent.len());
    for (i, line) in wrap(text, room).iter().enumerate() {
        let lead = if i == 0 { prefix } else { indent.as_str() };
        writeln!(out, "{lead}{line}")?;
    }
    Ok(())
}

impl Grid {
    pub fn new(header: &[&str]) -> Self {
        Grid {
            columns: header
                .iter()
                .map(|name| Column {
                    name: (*name).to_owned(),
                    fit: Fit::Fixed,
                })
                .collect(),
            rows: Vec::new(),
            drop_order: Vec::new(),
        }
    }

    fn column_mut(&mut self, name: &str) -> &mut Column {
        // Column names are the renderers' own constants: a wrong one is a bug caught by the
        // snapshot tests, not a user error.
        let index = self
            .columns
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("no column {name:?} in this grid"));
        &mut self.columns[index]
    }

    /// Lets these columns wrap between words on a narrow screen.
    pub fn prose(mut self, names: &[&str]) -> Self {
        for name in names {
            self.column_mut(name).fit = Fit::Prose;
        }
        self
    }

    /// Lets these columns be left out on a narrow screen, first named first.
    pub fn optional(mut self, names: &[&str]) -> Self {
        for name in names {
            let name = self.column_mut(name).name.clone();
            self.drop_order.push(name);
        }
        self
    }

    /// A row of cells, one per column; a short row is padded with blanks rather than left to
    /// panic later, a long one cut to the columns.
    pub fn add_row(&mut self, mut cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        cells.resize(self.columns.len(), String::new());
        self.rows.push(cells);
    }

    fn natural_width(&self, column: usize) -> usize {
        self.rows
            .iter()
            .map(|row| width_of(&row[column]))
            .chain([width_of(&self.columns[column].name)])
            .max()
            .unwrap_or(0)
    }

    fn narrowest_width(&self, column: usize) -> usize {
        match self.columns[column].fit {
            Fit::Fixed => self.natural_width(column),
            Fit::Prose => self
                .rows
                .iter()
                .map(|row| longest_word(&row[column]))
                .chain([longest_word(&self.columns[column].name)])
                .max()
                .unwrap_or(0)
                // Narrower than this, prose reads as a column of single words.
                .max(12.min(self.natural_width(column))),
        }
    }

    /// Widths for `shown` columns within `screen`, prose columns shrunk as needed; `None` if
    /// even the narrowest does not fit.
    fn widths(&self, shown: &[usize], screen: usize) -> Option<Vec<usize>> {
        let natural: Vec<usize> = shown.iter().map(|&c| self.natural_width(c)).collect();
        let room = screen.checked_sub(borders(shown.len()))?;
        if natural.iter().sum::<usize>() <= room {
            return Some(natural);
        }
        let narrowest: Vec<usize> = shown.iter().map(|&c| self.narrowest_width(c)).collect();
        if narrowest.iter().sum::<usize>() > room {
            return None;
        }
        // Give prose columns the room left, in proportion to what they would like.
        let fixed: usize = shown
            .iter()
            .zip(&natural)
            .filter(|(c, _)| self.columns[**c].fit == Fit::Fixed)
            .map(|(_, w)| w)
            .sum();
        let prose_room = room - fixed;
        let prose_natural: usize = shown
            .iter()
            .zip(&natural)
            .filter(|(c, _)| self.columns[**c].fit == Fit::Prose)
            .map(|(_, w)| w)
            .sum();
        let mut widths: Vec<usize> = shown
            .iter()
            .zip(natural.iter().zip(&narrowest))
            .map(|(c, (natural, narrowest))| match self.columns[*c].fit {
                Fit::Fixed => *natural,
                Fit::Prose => (natural * prose_room / prose_natural.max(1)).max(*narrowest),
            })
            .collect();
        // Rounding and the minimums may overshoot: take it back from the widest prose column.
        while widths.iter().sum::<usize>() > room {
            let widest = shown
                .iter()
                .enumerate()
                .filter(|(i, c)| self.columns[**c].fit == Fit::Prose && widths[*i] > narrowest[*i])
                .max_by_key(|(i, _)| widths[*i])
                .map(|(i, _)| i)?;
            widths[widest] -= 1;
        }
        Some(widths)
    }

    /// The first layout that fits: the whole table; fewer columns (optional ones left out, in
    /// their order); all columns with prose wrapped; fewer columns and prose wrapped; blocks.
    pub fn render(&self, screen: Screen) -> Rendered {
        let whole: Vec<usize> = (0..self.columns.len()).collect();
        if let Some(widths) = self.natural_widths(&whole, screen.width) {
            return Rendered {
                text: self.table(&whole, &widths),
                dropped: Vec::new(),
                screen,
            };
        }
        // Too wide: columns with nothing in them go first, without a word.
        if let Some(blank) = self.without_blank_columns() {
            return blank.render(screen);
        }
        if screen.width >= Screen::MIN_WIDTH {
            let candidates: Vec<(Vec<usize>, Vec<String>)> = (0..=self.drop_order.len())
                .map(|k| {
                    let dropped: Vec<String> = self.drop_order[..k].to_vec();
                    let shown = (0..self.columns.len())
                        .filter(|&c| !dropped.contains(&self.columns[c].name))
                        .collect();
                    (shown, dropped)
                })
                .collect();
            for (shown, dropped) in &candidates {
                if let Some(widths) = self.natural_widths(shown, screen.width) {
                    return Rendered {
                        text: self.table(shown, &widths),
                        dropped: dropped.clone(),
                        screen,
                    };
                }
            }
            // Wrapped, the layout with the fewest lines; of those, the one that leaves out least.
            let wrapped = candidates
                .iter()
                .filter_map(|(shown, dropped)| {
                    let widths = self.widths(shown, screen.width)?;
                    Some((self.table(shown, &widths), dropped))
                })
                .min_by_key(|(text, dropped)| (text.lines().count(), dropped.len()));
            if let Some((text, dropped)) = wrapped {
                return Rendered {
                    text,
                    dropped: dropped.clone(),
                    screen,
                };
            }
        }
        // A few rows of many numbers (a step per row) read best turned on their side.
        if self.rows.len() <= Self::TRANSPOSE_ROWS
            && let Some(side) = self.transposed().natural_widths_all(screen.width)
        {
            return Rendered {
                text: side,
                dropped: Vec::new(),
                screen,
            };
        }
        Rendered {
            text: self.blocks(screen.width),
            dropped: Vec::new(),
            screen,
        }
    }

    const TRANSPOSE_ROWS: usize = 4;

    /// This grid without its columns whose every cell is blank; `None` if there are none.
    fn without_blank_columns(&self) -> Option<Grid> {
        let keep: Vec<usize> = (0..self.columns.len())
            .filter(|&c| self.rows.iter().any(|row| !row[c].trim().is_empty()))
            .collect();
        if keep.len() == self.columns.len() || keep.is_empty() || self.rows.is_empty() {
            return None;
        }
        let names: Vec<&str> = keep
            .iter()
            .map(|&c| self.columns[c].name.as_str())
            .collect();
        Some(Grid {
            columns: keep.iter().map(|&c| self.columns[c].clone()).collect(),
            rows: self
                .rows
                .iter()
                .map(|row| keep.iter().map(|&c| row[c].clone()).collect())
                .collect(),
            drop_order: self
                .drop_order
                .iter()
                .filter(|name| names.contains(&name.as_str()))
                .cloned()
                .collect(),
        })
    }

    /// Columns become rows: the first column's cells are the header.
    fn transposed(&self) -> Grid {
        let mut header = vec![self.columns[0].name.clone()];
        header.extend(self.rows.iter().map(|row| row[0].clone()));
        let mut side = Grid {
            columns: header
                .into_iter()
                .map(|name| Column {
                    name,
                    fit: Fit::Fixed,
                })
                .collect(),
            rows: Vec::new(),
            drop_order: Vec::new(),
        };
        for (c, column) in self.columns.iter().enumerate().skip(1) {
            let mut row = vec![column.name.clone()];
            row.extend(self.rows.iter().map(|r| r[c].clone()));
            side.rows.push(row);
        }
        side
    }

    /// The whole table unwrapped, if it fits.
    fn natural_widths_all(&self, screen: usize) -> Option<String> {
        let all: Vec<usize> = (0..self.columns.len()).collect();
        self.natural_widths(&all, screen)
            .map(|widths| self.table(&all, &widths))
    }

    /// Widths for `shown` columns when they fit unwrapped.
    fn natural_widths(&self, shown: &[usize], screen: usize) -> Option<Vec<usize>> {
        let natural: Vec<usize> = shown.iter().map(|&c| self.natural_width(c)).collect();
        let room = screen.checked_sub(borders(shown.len()))?;
        (natural.iter().sum::<usize>() <= room).then_some(natural)
    }

    fn table(&self, shown: &[usize], widths: &[usize]) -> String {
        let mut table = Table::new();
        table
            .load_style(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(shown.iter().map(|&c| self.columns[c].name.clone()));
        for row in &self.rows {
            table.add_row(
                shown
                    .iter()
                    .zip(widths)
                    .map(|(&c, &width)| match self.columns[c].fit {
                        Fit::Prose => wrap(&row[c], width).join("\n"),
                        Fit::Fixed => row[c].clone(),
                    }),
            );
        }
        table.to_string()
    }

    /// One block per row: `name  value` lines, values wrapped under themselves.
    fn blocks(&self, screen: usize) -> String {
        let label = self
            .columns
            .iter()
            .map(|c| c.name.width())
            .max()
            .unwrap_or(0);
        let room = screen.saturating_sub(label + 2).max(20);
        let mut out = String::new();
        for (i, row) in self.rows.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            for (column, cell) in self.columns.iter().zip(row) {
                if cell.trim().is_empty() {
                    continue;
                }
                for (n, line) in wrap(cell, room).iter().enumerate() {
                    let name = if n == 0 { column.name.as_str() } else { "" };
                    let _ = writeln!(out, "{name:<label$}  {line}");
                }
            }
        }
        out.trim_end_matches('\n').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Grid {
        let mut g = Grid::new(&["finding", "order", "what it means", "took"])
            .prose(&["what it means"])
            .optional(&["took"]);
        g.add_row(vec![
            "amount_mismatch".into(),
            "a74b3881-80f3-7677-be4a-0123456789ab".into(),
            "the order's total differs from what Stripe received for it".into(),
            "12 ms".into(),
        ]);
        g
    }

    fn lines_fit(text: &str, width: usize) -> bool {
        text.lines().all(|l| l.width() <= width)
    }

    #[test]
    fn a_table_that_fits_is_drawn_whole() {
        let r = sample().render(Screen::new(200));
        assert!(r.dropped.is_empty());
        assert_eq!(r.text.lines().count(), 5, "{}", r.text);
        assert!(r.text.contains("what Stripe received for it"));
    }

    #[test]
    fn narrower_screens_drop_optional_columns_then_wrap_prose_then_use_blocks() {
        // Without "took" it would still be too wide: keep it, wrap the prose.
        let r = sample().render(Screen::new(100));
        assert!(r.dropped.is_empty());
        assert!(lines_fit(&r.text, 100), "{}", r.text);
        assert!(r.text.contains("a74b3881-80f3-7677-be4a-0123456789ab"));
        assert!(r.text.lines().count() > 5, "{}", r.text);

        // Without "took" it fits unwrapped: fewer columns before wrapping.
        let r = sample().render(Screen::new(125));
        assert_eq!(r.dropped, ["took"]);
        assert_eq!(r.text.lines().count(), 5, "{}", r.text);

        let r = sample().render(Screen::new(60));
        assert!(lines_fit(&r.text, 60), "{}", r.text);
        assert!(r.text.starts_with("finding"), "{}", r.text);
        assert!(
            r.text
                .contains("order          a74b3881-80f3-7677-be4a-0123456789ab")
        );
    }

    #[test]
    fn words_are_never_split() {
        assert_eq!(wrap("one two three", 7), ["one two", "three"]);
        assert_eq!(
            wrap("see pi_3MtwBwLkdIwHu7ix28a3tqPa now", 5),
            ["see", "pi_3MtwBwLkdIwHu7ix28a3tqPa", "now"]
        );
        assert_eq!(wrap("", 5), [""]);
    }
}
