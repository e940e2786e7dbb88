//! Sama's read endpoints: a batch's status with its tasks, one task, the multi-task status listing
//! and the delivered tasks (a page at a time, or as a consumer).

use super::*;

/// Which delivered tasks a listing asks for; `None` matches every task.
#[derive(Debug)]
pub(super) struct Wanted {
    batch_ids: Option<Vec<String>>,
    cbids: Option<Vec<String>>,
    match_type: Option<String>,
    task_ids: Option<Vec<String>>,
    /// Delivered at or after (µs).
    from_us: Option<i64>,
}

impl SamaSim {
    pub(super) fn tasks_page(
        &self,
        st: &Store,
        matching: Vec<usize>,
        now: i64,
        answers: bool,
    ) -> Vec<Value> {
        matching
            .into_iter()
            .map(|i| st.task_json(&st.tasks[i], now, answers))
            .collect()
    }

    /// Delivered tasks of a project matching the filters, ordered by (delivery time, id). The answer is
    /// kept and reused while nothing it depends on changes (no task changed, none added, and the clock has
    /// not reached the next task's delivery): paging through 100,000 delivered tasks would otherwise
    /// filter and sort the whole project once per page.
    pub(super) fn delivered(
        st: &mut Store,
        pid: u64,
        now: i64,
        wanted: &Wanted,
    ) -> Arc<Vec<(i64, usize)>> {
        let key = format!("{pid}|{wanted:?}");
        let Wanted {
            batch_ids,
            cbids,
            match_type,
            task_ids,
            from_us,
        } = wanted;
        let (batch_ids, cbids, task_ids) =
            (batch_ids.as_deref(), cbids.as_deref(), task_ids.as_deref());
        let match_type = match_type.as_deref();
        if let Some(list) = st.delivered_cache.as_ref().and_then(|c| {
            (c.key == key
                && c.generation == st.generation
                && c.tasks_len == st.tasks.len()
                && (c.computed_at..c.valid_until).contains(&now))
            .then(|| c.list.clone())
        }) {
            return list;
        }
        let mut valid_until = i64::MAX;
        let mut out: Vec<(i64, usize)> = Vec::new();
        for (i, t) in st.tasks.iter().enumerate() {
            if t.project != pid
                || t.canceled
                || t.deleted
                || t.errors.is_some()
                || batch_ids.is_some_and(|b| !b.contains(&t.batch.to_string()))
                || task_ids.is_some_and(|ids| !ids.contains(&t.id))
                || cbids.is_some_and(|c| {
                    !match_cbid(Store::client_batch_id_ref(t).as_deref(), c, match_type)
                })
            {
                continue;
            }
            let deliver = st.deliver_ms(t);
            if from_us.is_some_and(|f| deliver * 1000 < f) {
                continue;
            }
            // Delivered (or acknowledged) once the clock has passed both its scheduling and its delivery.
            let delivered_from = deliver.max(t.scheduled_ms);
            if now >= delivered_from {
                out.push((deliver, i));
            } else {
                valid_until = valid_until.min(delivered_from);
            }
        }
        // (delivery time, id) is unique per task: an unstable sort gives the same order, faster.
        out.sort_unstable_by(|a, b| (a.0, &st.tasks[a.1].id).cmp(&(b.0, &st.tasks[b.1].id)));
        let list = Arc::new(out);
        st.delivered_cache = Some(DeliveredCache {
            key,
            generation: st.generation,
            tasks_len: st.tasks.len(),
            computed_at: now,
            valid_until,
            list: list.clone(),
        });
        list
    }
}

pub(super) async fn batch_status(
    Project(a, pid): Project,
    Path((_, b)): Path<(String, String)>,
    uri: Uri,
) -> Answer {
    let bid = parse_id(strip_json(&b)?)?;
    let q = Query::parse(uri.query());
    let omit_failed = bool_param(&q, "omit_failed_task_data", false);
    let page = a.page_of(&q, &BATCH_PAGING);
    let now = a.now();
    let st = a.store.lock();
    let batch = batch_in(&st, pid, bid)?;
    let (state, [n, created, failed, canceled]) = st.batch_summary(batch, now);
    let mut out = json!({
        "batch_id": st.form.batch_id(batch.id), "project_id": pid,
        "tasks_file_name": batch.tasks_file_name, "notification_email": batch.notification_email,
        "created_at": iso_ms(batch.created_ms),
        "messages": batch.messages,
    });
    let fields = out.as_object_mut().expect("an object");
    if let Some(name) = st.form.job_state_field {
        fields.insert(name.into(), json!(state));
    }
    if !st.form.job_counts_missing {
        for (name, count) in [
            ("tasks_count", n),
            ("created_count", created),
            ("failed_count", failed),
            ("canceled_count", canceled),
        ] {
            fields.insert(name.into(), json!(count));
        }
    }
    if page.size > 0 {
        let tasks: Vec<Value> = page
            .slice(&batch.entries[..])
            .iter()
            .map(|&i| {
                let t = &st.tasks[i];
                let status = creation_status(batch, t, now);
                let mut e = json!({"id": t.id, "status": status});
                if matches!(status, "failed" | "canceled") && !omit_failed {
                    e["data"] = Value::Object(t.data.clone());
                }
                if status == "failed" {
                    e["errors"] = json!(t.errors);
                }
                e
            })
            .collect();
        TASKS.write(
            out.as_object_mut().expect("an object"),
            tasks,
            &no_facts(page),
        );
    }
    Ok(Json(out).into_response())
}

pub(super) async fn task_status(
    Project(a, pid): Project,
    Path((_, t)): Path<(String, String)>,
) -> Answer {
    let tid = strip_json(&t)?;
    let now = a.now();
    let st = a.store.lock();
    let &i = st.by_id.get(tid).ok_or_else(not_found)?;
    let task = &st.tasks[i];
    if task.project != pid || !st.visible(task, now) {
        return Err(not_found());
    }
    let task = st.task_json(task, now, true);
    // Which member holds the task is a dialect setting (`single_task_under`).
    let body = match a.shared.config.dialect.word("single_task_under") {
        Some("tasks") => json!({ "tasks": [task] }),
        _ => json!({ "task": task }),
    };
    Ok(Json(body).into_response())
}

pub(super) async fn multi_status(Project(a, pid): Project, uri: Uri) -> Answer {
    let q = Query::parse(uri.query());
    let now = a.now();
    let mut st = a.store.lock();
    if st.config.status_rate_limit {
        let at = std::time::Instant::now();
        if st
            .last_status_call
            .is_some_and(|last| at.duration_since(last) < Duration::from_secs(1))
        {
            let mut res = errors(
                StatusCode::TOO_MANY_REQUESTS,
                json!(429),
                "Rate limit exceeded: 1 request per second",
            );
            res.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            return Err(res);
        }
        st.last_status_call = Some(at);
    }
    let page = a.page_of(&q, &STATUS_PAGING);
    let omit_answers = bool_param(&q, "omit_answers", true);
    let batch_ids = list_param(&q, "batch_id");
    let cbids = list_param(&q, "client_batch_id");
    let match_type = q.get("client_batch_id_match_type");
    let task_ids = list_param(&q, "task_id").or_else(|| list_param(&q, "task_ids"));
    let state = q.get("state").map(|s| s.trim().to_ascii_lowercase());
    let date_type = q.get("date_type").unwrap_or("created_at");
    let from = instant_param(&q, "from")?;
    let to = instant_param(&q, "to")?;
    let matching: Vec<usize> = (0..st.tasks.len())
        .filter(|&i| {
            let t = &st.tasks[i];
            if t.project != pid || !st.visible(t, now) {
                return false;
            }
            if batch_ids
                .as_ref()
                .is_some_and(|b| !b.contains(&t.batch.to_string()))
            {
                return false;
            }
            if cbids
                .as_ref()
                .is_some_and(|c| !match_cbid(Store::client_batch_id(t).as_deref(), c, match_type))
            {
                return false;
            }
            if task_ids.as_ref().is_some_and(|ids| !ids.contains(&t.id)) {
                return false;
            }
            if state.as_deref().is_some_and(|s| s != st.state(t, now)) {
                return false;
            }
            let when_ms = match date_type {
                "delivered_at" | "completion_date" => st.deliver_ms(t),
                "updated_at" => t.rejected.as_ref().map(|r| r.0).unwrap_or(t.scheduled_ms),
                _ => t.scheduled_ms,
            } * 1000;
            from.is_none_or(|f| when_ms >= f) && to.is_none_or(|x| when_ms <= x)
        })
        .collect();
    let tasks = a.tasks_page(&st, page.slice(&matching[..]).to_vec(), now, !omit_answers);
    st.last_status_call = Some(std::time::Instant::now());
    Ok(Json(TASKS.body(tasks, &no_facts(page))).into_response())
}

pub(super) async fn delivered_get(Project(a, pid): Project, uri: Uri) -> Answer {
    let q = Query::parse(uri.query());
    let from = instant_param(&q, "from")?;
    let page = a.page_of(&q, &DELIVERED_PAGING);
    let now = a.now();
    let mut st = a.store.lock();
    let wanted = Wanted {
        batch_ids: list_param(&q, "batch_id"),
        cbids: list_param(&q, "client_batch_id"),
        match_type: q.get("client_batch_id_match_type").map(str::to_string),
        task_ids: list_param(&q, "task_id"),
        from_us: from,
    };
    let all = SamaSim::delivered(&mut st, pid, now, &wanted);
    let body = TASKS.bytes(
        page.slice(&all[..]).iter(),
        &no_facts(page),
        |out, (_, i)| st.write_delivered_task_json(out, &st.tasks[*i], now),
    );
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

/// Consumer mode: deliveries this consumer has not been given yet; `page`/`page_size` are ignored.
pub(super) async fn delivered_post(Project(a, pid): Project, body: Bytes) -> Answer {
    let req = json_or_empty(&body)?;
    let text_list = |k: &str| -> Option<Vec<String>> {
        match req.get(k) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.split(',').map(|x| x.trim().to_string()).collect()),
            Some(v) => Some(vec![v.to_string()]),
        }
    };
    let consumer = req
        .get("consumer")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let limit = req
        .get("limit")
        .and_then(Value::as_u64)
        .unwrap_or(DELIVERED_PAGE_MAX)
        .clamp(1, a.capped(DELIVERED_PAGE_MAX)) as usize;
    let now = a.now();
    let mut st = a.store.lock();
    let wanted = Wanted {
        batch_ids: text_list("batch_id"),
        cbids: text_list("client_batch_id"),
        match_type: req
            .get("client_batch_id_match_type")
            .and_then(Value::as_str)
            .map(str::to_string),
        task_ids: None,
        from_us: None,
    };
    let all = SamaSim::delivered(&mut st, pid, now, &wanted);
    let seen = st
        .consumers
        .remove(&(pid, consumer.clone()))
        .unwrap_or_default();
    let fresh: Vec<(i64, usize)> = all
        .iter()
        .copied()
        .filter(|(d, i)| !seen.contains(&(*i, *d)))
        .take(limit)
        .collect();
    let mut seen: HashSet<(usize, i64)> = seen;
    let tasks: Vec<Value> = fresh
        .iter()
        .map(|&(d, i)| {
            seen.insert((i, d));
            st.delivered_task_json(&st.tasks[i], now)
        })
        .collect();
    st.consumers.insert((pid, consumer), seen);
    Ok(Json(json!({ "tasks": tasks })).into_response())
}
