//! The fake object store behind Deepen's `resumable_upload_url` (a Google Cloud Storage upload session on
//! the real service): called without the bearer token, the body streamed to disk, a size other than the
//! declared `file_size` refused.

use super::*;

/// The fake object store behind `resumable_upload_url`: no bearer token, the body streamed to disk.
pub(super) async fn put(State(a): S, uri: Uri, body: Body) -> Response {
    let q = Query::parse(uri.query());
    let Some(upload_id) = q.get("upload_id").map(str::to_string) else {
        return storage_error(StatusCode::BAD_REQUEST, "missing upload_id");
    };
    let target = a.store.lock().uploads.get(&upload_id).cloned();
    let Some((did, k)) = target else {
        return storage_error(StatusCode::NOT_FOUND, "No such upload.");
    };
    let path = a.archive_path(&upload_id);
    let partial = path.with_extension("part");
    let written = async {
        let mut file = std::fs::File::create(&partial).map_err(|e| e.to_string())?;
        let mut stream = body.into_data_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            n += chunk.len() as u64;
            file.write_all(&chunk).map_err(|e| e.to_string())?;
        }
        file.flush().map_err(|e| e.to_string())?;
        Ok::<u64, String>(n)
    }
    .await;
    let n = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return storage_error(StatusCode::BAD_REQUEST, &format!("upload failed: {e}"));
        }
    };
    let mut store = a.store.lock();
    let Some(ar) = store
        .datasets
        .get_mut(&did)
        .and_then(|d| d.archives.get_mut(k))
    else {
        return storage_error(StatusCode::NOT_FOUND, "No such upload.");
    };
    if n != ar.file_size {
        let _ = std::fs::remove_file(&partial);
        return storage_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Content length {n} does not match the declared file_size {}.",
                ar.file_size
            ),
        );
    }
    if std::fs::rename(&partial, &path).is_err() {
        return storage_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not store the object",
        );
    }
    ar.uploaded = Some(n);
    Json(json!({"kind": "storage#object", "name": ar.file_name, "size": n.to_string()}))
        .into_response()
}

fn storage_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": status.as_u16(), "message": message}})),
    )
        .into_response()
}
