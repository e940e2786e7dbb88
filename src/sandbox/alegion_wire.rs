//! Alegion's wire formats: workflows, batches, records and results as the API answers them (JSON, and
//! results as CSV).

use super::*;

impl AlegionSim {
    /// A result's `resultData`: the seeded labels, or with a quality set (`truth`), the class and a box
    /// (`[x1, y1, x2, y2]`, 0 to 1) drawn from the record's truth at that accuracy.
    fn labels(&self, r: &Rec) -> Value {
        let mut v = self.store.result_data(r.id);
        if let Some(q) = self.shared.quality() {
            use crate::sandbox::truth;
            let (id, seed) = (truth::identity(&r.data), self.shared.config.seed);
            v["label"] = json!(truth::labelled_class(q, seed, "alegion", &id, "label"));
            v["box"] = json!(truth::labelled_box(q, seed, "alegion", &id));
        }
        v
    }

    pub(super) fn workflow_json(w: &Workflow) -> Value {
        json!({
            "id": w.id.to_string(),
            "name": w.name,
            "description": w.description,
            "isActive": true,
            "isVisible": true,
            "isArchived": false,
            "createdAt": iso_ms(w.created_ms),
            "isLimitWorkerToOncePerInputRecord": false,
        })
    }

    pub(super) fn batch_json(b: &Batch) -> Value {
        json!({
            "id": b.id.to_string(),
            "name": b.name,
            "workflowId": b.workflow_id.to_string(),
            "priority": "normal",
            "isActive": true,
            "isEnabled": b.enabled,
            "createdAt": iso_ms(b.created_ms),
            "lowWaterMark": 200,
            "highWaterMark": 500,
        })
    }

    pub(super) fn record_json(b: &Batch, r: &Rec, status: Status) -> Value {
        json!({
            "id": r.id.to_string(),
            "data": r.data,
            "metadata": r.metadata,
            "createdAt": iso_ms(r.created_ms),
            "workflowStageId": b.stages[status.stage()].to_string(),
            "status": status.as_str(),
        })
    }

    /// A result as Alegion shows it, borrowing the record: a page of 1,000 is written straight to JSON text
    /// rather than built as a `Value` tree per result and dropped.
    pub(super) fn result_out<'a>(&self, b: &Batch, r: &'a Rec, created_ms: i64) -> ResultOut<'a> {
        ResultOut {
            id: r.result_id.to_string(),
            created_at: iso_ms(created_ms),
            result_data: self.labels(r),
            input_record: InputRecordOut {
                created_at: iso_ms(r.created_ms),
                metadata: &r.metadata,
                data: &r.data,
                workflow_stage_id: b.stages[2].to_string(),
                id: r.id.to_string(),
                status: "complete",
            },
        }
    }
}

/// A result, fields in Alegion's order (see `Alegion::result_out`).
#[derive(serde::Serialize)]
pub(super) struct ResultOut<'a> {
    id: String,
    #[serde(rename = "createdAt")]
    created_at: String,
    #[serde(rename = "resultData")]
    result_data: Value,
    #[serde(rename = "inputRecord")]
    input_record: InputRecordOut<'a>,
}

#[derive(serde::Serialize)]
pub(super) struct InputRecordOut<'a> {
    #[serde(rename = "createdAt")]
    created_at: String,
    metadata: &'a Option<String>,
    data: &'a Map<String, Value>,
    #[serde(rename = "workflowStageId")]
    workflow_stage_id: String,
    id: String,
    status: &'static str,
}

impl AlegionSim {
    /// One row per result; `data` and `resultData` as JSON text, so nothing is lost.
    pub(super) fn results_csv(&self, b: &Batch, results: &[(&Rec, i64)]) -> Result<String, String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let e = |e: csv::Error| e.to_string();
        w.write_record([
            "id",
            "createdAt",
            "inputRecordId",
            "inputRecordCreatedAt",
            "metadata",
            "status",
            "workflowStageId",
            "data",
            "resultData",
        ])
        .map_err(e)?;
        for (r, t) in results {
            w.write_record([
                r.result_id.to_string(),
                iso_ms(*t),
                r.id.to_string(),
                iso_ms(r.created_ms),
                r.metadata.clone().unwrap_or_default(),
                "complete".to_string(),
                b.stages[2].to_string(),
                Value::Object(r.data.clone()).to_string(),
                self.labels(r).to_string(),
            ])
            .map_err(e)?;
        }
        let bytes = w.into_inner().map_err(|e| e.to_string())?;
        String::from_utf8(bytes).map_err(|e| e.to_string())
    }
}
