//! `predict`/`embed` output as parquet, written in row groups as rows arrive (memory holds one
//! row group), through an [`AtomicOutput`] so the file appears complete or not at all.
//!
//! Columns: `line` (int64), then string columns (`smiles`, `name`, the input's passed-through
//! columns), then the values — one nullable float32 column per prediction, or one `embedding`
//! column, a list of `hidden` float32 (null for a rejected row) — then `unknown_atoms` (int32)
//! and `error` (string, null when the row is fine).

use std::sync::Arc;

use anyhow::{Context, Result};
use parquet::basic::{Compression, LogicalType, Repetition, Type as PhysicalType};
use parquet::data_type::{ByteArray, ByteArrayType, FloatType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use crate::data::AtomicOutput;

/// Rows per row group: a few MB of buffered values even for the base model's 768-wide
/// embeddings, and groups large enough for readers to scan quickly.
const ROWS_PER_GROUP: usize = 4096;

/// What follows the identity columns.
pub enum Values {
    /// One nullable float32 column per name (predictions).
    Columns(Vec<String>),
    /// One `embedding` list column of this many float32.
    Embedding(usize),
}

/// One output row.
pub struct Row<'a> {
    pub line: usize,
    /// `smiles`, `name` and the passed-through columns, in the writer's order.
    pub strings: &'a [String],
    /// `None` for a rejected row.
    pub values: Option<&'a [f32]>,
    pub unknown_atoms: usize,
    pub error: Option<&'a str>,
}

#[derive(Default)]
struct Buffer {
    lines: Vec<i64>,
    strings: Vec<Vec<String>>,
    values: Vec<Option<Vec<f32>>>,
    unknown_atoms: Vec<i32>,
    errors: Vec<Option<String>>,
}

pub struct ParquetRows {
    writer: SerializedFileWriter<AtomicOutput>,
    string_columns: usize,
    values: Values,
    buffer: Buffer,
}

fn string_column(name: &str) -> Result<Arc<Type>> {
    Ok(Arc::new(
        Type::primitive_type_builder(name, PhysicalType::BYTE_ARRAY)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(Some(LogicalType::String))
            .build()?,
    ))
}

impl ParquetRows {
    /// `string_names`: `smiles`, `name` and the passed-through columns.
    pub fn create(path: &std::path::Path, string_names: &[String], values: Values) -> Result<Self> {
        let mut fields = vec![Arc::new(
            Type::primitive_type_builder("line", PhysicalType::INT64)
                .with_repetition(Repetition::REQUIRED)
                .build()?,
        )];
        for name in string_names {
            fields.push(string_column(name)?);
        }
        match &values {
            Values::Columns(names) => {
                for name in names {
                    fields.push(Arc::new(
                        Type::primitive_type_builder(name, PhysicalType::FLOAT)
                            .with_repetition(Repetition::OPTIONAL)
                            .build()?,
                    ));
                }
            }
            Values::Embedding(_) => {
                let element = Type::primitive_type_builder("element", PhysicalType::FLOAT)
                    .with_repetition(Repetition::REQUIRED)
                    .build()?;
                let list = Type::group_type_builder("list")
                    .with_repetition(Repetition::REPEATED)
                    .with_fields(vec![Arc::new(element)])
                    .build()?;
                fields.push(Arc::new(
                    Type::group_type_builder("embedding")
                        .with_repetition(Repetition::OPTIONAL)
                        .with_logical_type(Some(LogicalType::List))
                        .with_fields(vec![Arc::new(list)])
                        .build()?,
                ));
            }
        }
        fields.push(Arc::new(
            Type::primitive_type_builder("unknown_atoms", PhysicalType::INT32)
                .with_repetition(Repetition::REQUIRED)
                .build()?,
        ));
        fields.push(string_column("error")?);
        let schema = Type::group_type_builder("schema")
            .with_fields(fields)
            .build()?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let out = AtomicOutput::create(path)?;
        let writer = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props))
            .with_context(|| format!("{}: cannot start the parquet file", path.display()))?;
        Ok(Self {
            writer,
            string_columns: string_names.len(),
            values,
            buffer: Buffer::default(),
        })
    }

    pub fn push(&mut self, row: Row<'_>) -> Result<()> {
        let b = &mut self.buffer;
        b.lines.push(row.line as i64);
        b.strings.push(
            row.strings
                .iter()
                .cloned()
                .chain(std::iter::repeat(String::new()))
                .take(self.string_columns)
                .collect(),
        );
        b.values.push(row.values.map(<[f32]>::to_vec));
        b.unknown_atoms
            .push(i32::try_from(row.unknown_atoms).unwrap_or(i32::MAX));
        b.errors.push(row.error.map(str::to_string));
        if b.lines.len() >= ROWS_PER_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered rows as one row group.
    fn flush(&mut self) -> Result<()> {
        let b = std::mem::take(&mut self.buffer);
        if b.lines.is_empty() {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        // one column writer at a time, in schema order: open, write, close
        macro_rules! next {
            () => {
                group
                    .next_column()?
                    .context("parquet schema and columns disagree")?
            };
        }
        let mut column = next!();
        column
            .typed::<Int64Type>()
            .write_batch(&b.lines, None, None)?;
        column.close()?;
        for k in 0..self.string_columns {
            let cells: Vec<Option<&str>> = b
                .strings
                .iter()
                .map(|r| Some(r[k].as_str()).filter(|s| !s.is_empty()))
                .collect();
            let mut column = next!();
            write_optional_strings(&mut column, &cells)?;
            column.close()?;
        }
        match &self.values {
            Values::Columns(names) => {
                for k in 0..names.len() {
                    let mut values = Vec::new();
                    let mut defs = Vec::with_capacity(b.values.len());
                    for v in &b.values {
                        match v.as_ref().and_then(|v| v.get(k)) {
                            Some(&x) => {
                                values.push(x);
                                defs.push(1);
                            }
                            None => defs.push(0),
                        }
                    }
                    let mut column = next!();
                    column
                        .typed::<FloatType>()
                        .write_batch(&values, Some(&defs), None)?;
                    column.close()?;
                }
            }
            Values::Embedding(hidden) => {
                let mut values = Vec::new();
                let mut defs = Vec::new();
                let mut reps = Vec::new();
                for v in &b.values {
                    match v {
                        Some(v) => {
                            values.extend_from_slice(&v[..(*hidden).min(v.len())]);
                            for i in 0..(*hidden).min(v.len()) {
                                defs.push(2);
                                reps.push(i16::from(i > 0));
                            }
                        }
                        None => {
                            defs.push(0);
                            reps.push(0);
                        }
                    }
                }
                let mut column = next!();
                column
                    .typed::<FloatType>()
                    .write_batch(&values, Some(&defs), Some(&reps))?;
                column.close()?;
            }
        }
        let mut column = next!();
        column
            .typed::<Int32Type>()
            .write_batch(&b.unknown_atoms, None, None)?;
        column.close()?;
        let errors: Vec<Option<&str>> = b.errors.iter().map(|e| e.as_deref()).collect();
        let mut column = next!();
        write_optional_strings(&mut column, &errors)?;
        column.close()?;
        group.close()?;
        Ok(())
    }

    /// Writes the last row group and the footer, then moves the file into place.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.writer.into_inner()?.commit()
    }
}

fn write_optional_strings(
    column: &mut parquet::file::writer::SerializedColumnWriter<'_>,
    cells: &[Option<&str>],
) -> Result<()> {
    let values: Vec<ByteArray> = cells
        .iter()
        .flatten()
        .map(|s| ByteArray::from(s.as_bytes().to_vec()))
        .collect();
    let defs: Vec<i16> = cells.iter().map(|c| i16::from(c.is_some())).collect();
    column
        .typed::<ByteArrayType>()
        .write_batch(&values, Some(&defs), None)?;
    Ok(())
}
