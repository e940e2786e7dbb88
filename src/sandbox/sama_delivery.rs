//! Sama's background work: batch creation finishing, tasks being delivered, and the creation and
//! delivery callbacks with their retries, driven by a ticker on the sandbox clock.

use super::*;

impl SamaSim {
    pub(super) fn start_ticker(self: &Arc<Self>) {
        if self.ticker.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                match me.upgrade() {
                    Some(s) => s.settle(),
                    None => return,
                }
            }
        });
    }

    /// Counts newly created tasks, and sends the creation and delivery callbacks that are due.
    pub(super) fn settle(self: &Arc<Self>) {
        let now = self.now();
        let mut sends = Vec::new();
        let mut created_keys = Vec::new();
        {
            let mut st = self.store.lock();
            // Tasks before `settled_upto` are settled for good; without a delivery callback anywhere, they need
            // no look (this runs on every request: a scan of 100,000 tasks each time would dominate).
            let deliveries = st.projects.iter().any(|p| p.delivery_callback.is_some());
            let from = if deliveries { 0 } else { st.settled_upto };
            for i in from..st.tasks.len() {
                let t = &st.tasks[i];
                if !t.settled && !t.canceled && now >= t.scheduled_ms {
                    let project = st.project(t.project);
                    let cb = project.and_then(|p| p.creation_callback.clone());
                    let (attempts, backoff) = project
                        .map(|p| (p.callback_attempts, p.callback_backoff_ms))
                        .unwrap_or((5, 1000));
                    if let Some(errs) = &t.errors {
                        if let Some(cb) = cb {
                            let defaults = Store::default_answers(t);
                            let questions: Map<String, Value> = t
                                .data
                                .iter()
                                .filter(|(k, _)| !k.starts_with("output_"))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            let message = errs
                                .first()
                                .and_then(|e| e.get("message"))
                                .cloned()
                                .unwrap_or(json!("Task creation failed"));
                            let payload = json!({"success": false, "errors": [{
                                "task_id": t.id, "type": 400, "message": message,
                                "request_data": {"project_id": t.project, "questions": questions,
                                                 "default_answers": defaults, "priority": t.priority}}]});
                            sends.push((cb, "creation", t.id.clone(), payload, attempts, backoff));
                        }
                    } else {
                        created_keys.push(match t.data.get(STATS_KEY_INPUT) {
                            Some(Value::String(s)) => s.clone(),
                            Some(v @ Value::Number(_)) => v.to_string(),
                            _ => t.id.clone(),
                        });
                        if let Some(cb) = cb {
                            let mut task = json!({
                                "id": t.id, "project_id": t.project, "created_at": iso_ms(t.scheduled_ms),
                                "state": st.state(t, now), "data": t.data, "answers": {},
                            });
                            if let Some(o) = task.as_object_mut() {
                                o.insert("batch_id".into(), json!(t.batch));
                            }
                            sends.push((
                                cb,
                                "creation",
                                t.id.clone(),
                                json!({ "task": task }),
                                attempts,
                                backoff,
                            ));
                        }
                    }
                    st.tasks[i].settled = true;
                }
                let t = &st.tasks[i];
                if deliveries && st.visible(t, now) {
                    let deliver = st.deliver_ms(t);
                    if now >= deliver && t.delivery_notified != Some(deliver) {
                        let project = st.project(t.project);
                        if let Some(cb) = project.and_then(|p| p.delivery_callback.clone()) {
                            let p = project.expect("checked");
                            let payload = json!({"task": st.delivered_task_json(t, now)});
                            sends.push((
                                cb,
                                "delivery",
                                t.id.clone(),
                                payload,
                                p.callback_attempts,
                                p.callback_backoff_ms,
                            ));
                        }
                        st.tasks[i].delivery_notified = Some(deliver);
                    }
                }
            }
            while st
                .tasks
                .get(st.settled_upto)
                .is_some_and(|t| t.settled || t.canceled)
            {
                st.settled_upto += 1;
            }
        }
        if !created_keys.is_empty() {
            self.shared
                .stats
                .created(created_keys.iter().map(String::as_str));
        }
        for (cb, kind, task_id, payload, attempts, backoff) in sends {
            let me = self.clone();
            tokio::spawn(async move {
                me.post_callback(cb, kind, task_id, payload, attempts, backoff)
                    .await
            });
        }
    }

    /// Posts one payload: up to `attempts` tries, waiting `backoff * 2^n` between them.
    async fn post_callback(
        self: Arc<Self>,
        cb: Callback,
        kind: &'static str,
        task_id: String,
        payload: Value,
        attempts: u32,
        backoff_ms: u64,
    ) {
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        let mut url = match url::Url::parse(&cb.url) {
            Ok(u) => u,
            Err(_) => return,
        };
        if let CallbackAuth::AccessKey(k) = &cb.auth {
            url.query_pairs_mut().append_pair("access_key", k);
        }
        for attempt in 1..=attempts.max(1) {
            let mut rb = self
                .http
                .post(url.clone())
                .header("content-type", "application/json")
                .body(body.clone());
            match &cb.auth {
                CallbackAuth::Basic { username, password } => {
                    rb = rb.header(
                        "authorization",
                        format!(
                            "Basic {}",
                            base64(format!("{username}:{password}").as_bytes())
                        ),
                    );
                }
                CallbackAuth::Token(t) => rb = rb.header("x-auth-token", t),
                CallbackAuth::Hmac { key_id, secret } => {
                    let date = chrono::Utc::now()
                        .format("%a, %d %b %Y %H:%M:%S GMT")
                        .to_string();
                    let target = match url.query() {
                        Some(q) => format!("{}?{q}", url.path()),
                        None => url.path().to_string(),
                    };
                    let mut to_sign = format!("POST\n{target}\n{date}\n").into_bytes();
                    to_sign.extend_from_slice(&body);
                    let sig = base64(&hmac_sha256(secret.as_bytes(), &to_sign));
                    rb = rb
                        .header("x-wsm-date", date)
                        .header("authorization", format!("HMAC-SHA256 {key_id}:{sig}"));
                }
                CallbackAuth::AccessKey(_) | CallbackAuth::None => {}
            }
            let (status, reply, error) = match rb.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.bytes().await.unwrap_or_default();
                    (Some(status), text, None)
                }
                Err(e) => (None, Bytes::new(), Some(e.to_string())),
            };
            let ok = status.is_some_and(|s| (200..300).contains(&s));
            self.callback_log.lock().0.push(json!({
                "kind": kind, "task_id": task_id, "attempt": attempt, "status": status,
                "ok": ok, "error": error,
            }));
            if ok {
                if kind == "delivery" {
                    self.after_delivery_callback(&task_id, &reply);
                }
                return;
            }
            if attempt < attempts {
                let wait = backoff_ms.saturating_mul(1 << (attempt - 1).min(20));
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
        self.callback_log.lock().1.push(json!({
            "kind": kind, "task_id": task_id, "payload": payload,
        }));
    }

    /// A 2xx acknowledges the delivery; `{"reject": true, "reasons": [...]}` in it rejects the task instead
    /// (the rejection format is ours: Sama's is not public).
    pub(super) fn after_delivery_callback(&self, task_id: &str, reply: &[u8]) {
        let now = self.now();
        let mut st = self.store.lock();
        let Some(&i) = st.by_id.get(task_id) else {
            return;
        };
        let reply: Value = serde_json::from_slice(reply).unwrap_or(Value::Null);
        if reply.get("reject").and_then(Value::as_bool) == Some(true) {
            let reasons = strings(&reply, "reasons");
            st.task_mut(i).rejected = Some((now, reasons));
        } else {
            let deliver = st.deliver_ms(&st.tasks[i]);
            st.task_mut(i).acknowledged = Some(deliver);
        }
    }
}
