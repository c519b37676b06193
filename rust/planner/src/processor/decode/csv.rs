//! CSV input: RFC 4180 rows with a header naming the contract's fields, decoded row by row.

use super::columns::{csv_cell, type_violation, unknown_field_violation, Cell, RecordDecoder, TypeMismatch};
use crate::processor::error::{ProcessorError, Result};

impl RecordDecoder<'_> {
    pub(super) fn decode_csv(&mut self, data: &[u8]) -> Result<()> {
        let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(data);
        let mut record = csv::ByteRecord::new();
        let header_ok = reader
            .read_byte_record(&mut record)
            .map_err(|e| parse_error(format!("CSV header: {e}")))?;
        if !header_ok {
            return Ok(()); // empty input: no records
        }
        let header: Vec<String> = record
            .iter()
            .enumerate()
            .map(|(i, name)| {
                std::str::from_utf8(name)
                    .map(|s| s.trim_start_matches('\u{feff}').to_string())
                    .map_err(|_| parse_error(format!("CSV header: column {} is not UTF-8", i + 1)))
            })
            .collect::<Result<_>>()?;
        let mut columns = Vec::with_capacity(header.len());
        for (i, name) in header.iter().enumerate() {
            if header[..i].contains(name) {
                return Err(parse_error(format!("CSV header: column {name:?} appears twice")));
            }
            columns.push(self.contract.field_index(name));
        }
        let mut mismatched = Vec::new();
        loop {
            let start = reader.position().byte() as usize;
            let line = reader.position().line();
            match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let record_index = self.next_record(start..data.len());
                    self.syntax(record_index, format!("line {line}: {e}"));
                    break;
                }
            }
            let end = (reader.position().byte() as usize).min(data.len());
            let record_index = self.next_record(start..end);
            if record.len() != header.len() {
                self.syntax(
                    record_index,
                    format!("line {line}: the row has {} fields, the header has {}", record.len(), header.len()),
                );
                continue;
            }
            // Cells borrow from `record`, which the next read overwrites: one small Vec per row.
            let mut cells: Vec<Cell<'_>> = Vec::with_capacity(self.contract.fields.len());
            cells.resize_with(self.contract.fields.len(), || Cell::Absent);
            mismatched.clear();
            let mut utf8_error = None;
            for (position, bytes) in record.iter().enumerate() {
                let Ok(text) = std::str::from_utf8(bytes) else {
                    utf8_error = Some(position);
                    break;
                };
                match columns[position] {
                    Some(field) => {
                        let spec = &self.contract.fields[field];
                        match csv_cell(spec.kind, text) {
                            Ok(cell) => cells[field] = cell,
                            Err(TypeMismatch(message)) => {
                                mismatched.push(field);
                                self.violations.push(type_violation(record_index, &spec.name, text, message));
                            }
                        }
                    }
                    None if !self.contract.additional_properties && !text.is_empty() => {
                        self.violations.push(unknown_field_violation(record_index, &header[position], text));
                    }
                    None => {}
                }
            }
            if let Some(position) = utf8_error {
                self.violations.retain(|v| v.record_index != record_index);
                self.syntax(record_index, format!("line {line}: field {:?} is not valid UTF-8", header[position]));
                continue;
            }
            self.commit(record_index, &cells, &mismatched);
        }
        Ok(())
    }
}

fn parse_error(message: String) -> ProcessorError {
    ProcessorError::Parse { message, errors: Vec::new() }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};

    use crate::processor::decode::tests::{contract, decode_str, rules};
    use crate::processor::decode::{decode, InputFormat};

    #[test]
    fn csv_quoting_embedded_commas_quotes_and_newlines() {
        let data = "id,n,x,ok,p\n\"a,1\",3,1.5,true,\"{\"\"k\"\": 1}\"\n\"multi\nline \"\"quoted\"\"\",,,,\nb,x,1e400,maybe,[1]\nc,1,2\n";
        let d = decode_str(data, InputFormat::Csv);
        let ids = d.batch.column(0).as_string::<i32>();
        assert_eq!(ids.value(0), "a,1");
        assert_eq!(ids.value(1), "multi\nline \"quoted\"");
        assert_eq!(d.batch.column(4).as_string::<i32>().value(0), "{\"k\": 1}");
        assert!(d.batch.column(1).is_null(1), "empty CSV fields are absent");
        assert_eq!(
            rules(&d),
            [(2, Some("n"), "type"), (2, Some("x"), "type"), (2, Some("ok"), "type"), (2, Some("p"), "type"), (3, None, "syntax")]
        );
        assert_eq!(d.violations[4].message, "line 6: the row has 3 fields, the header has 5");
        assert_eq!(&data[d.spans[1].clone()], "\"multi\nline \"\"quoted\"\"\",,,,\n");
    }

    #[test]
    fn csv_unknown_columns_and_bad_headers() {
        let d = decode_str("id,extra\na,\nb,zz\n", InputFormat::Csv);
        assert_eq!(rules(&d), [(1, Some("extra"), "additionalProperties")]);
        let err = decode(&contract(), b"id,id\na,b\n", InputFormat::Csv).unwrap_err();
        assert_eq!(err.to_string(), "CSV header: column \"id\" appears twice");
    }
}
