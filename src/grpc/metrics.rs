//! `killkrill.v1.MetricService`: ingest, series and range queries, same service layer as REST.

use std::collections::BTreeMap;

use serde_json::Value;
use tonic::{Request, Response, Status};

use super::{
    Call,
    convert::{non_empty, timestamp},
    logs::ingestor,
    page,
    proto::{
        IngestMetricsRequest, IngestMetricsResponse, ListSeriesRequest, ListSeriesResponse, Point, QueryMetricsRequest,
        QueryMetricsResponse, Sample, Series, SeriesPoints, metric_service_server::MetricService,
    },
};
use crate::{
    auth::Role,
    service::samples::{self, Aggregation, NewSample, RangeQuery, SeriesView},
    state::AppState,
    time,
};

pub struct MetricApi(pub AppState);

fn new_sample(sample: Sample) -> NewSample {
    NewSample {
        name: sample.name,
        metric_type: non_empty(sample.r#type),
        labels: sample.labels.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        value: Some(sample.value),
        timestamp: timestamp(sample.timestamp),
    }
}

fn series_of(view: SeriesView) -> Series {
    let labels = match view.labels {
        Value::Object(map) => {
            map.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
        }
        _ => Default::default(),
    };
    Series {
        id: view.id,
        source_id: view.source_id,
        name: view.name,
        labels,
        r#type: view.metric_type,
        // NaN for a last value that is not a finite number (REST shows null).
        last_value: view.last_value.unwrap_or(f64::NAN),
        last_timestamp: view.last_timestamp,
    }
}

#[tonic::async_trait]
impl MetricService for MetricApi {
    async fn ingest_metrics(
        &self,
        request: Request<IngestMetricsRequest>,
    ) -> Result<Response<IngestMetricsResponse>, Status> {
        let call = Call::new(&request);
        let batch = request.into_inner();
        call.answer(async {
            let ingestor = ingestor(&call, &self.0).await?;
            let source = ingestor.authorize(self.0.db.conn(), &batch.source_id, call.client_ip()).await?;
            let inputs = batch.metrics.into_iter().map(new_sample).collect();
            let retention = self.0.config.retention;
            let ingested = samples::ingest(&self.0.db, &self.0.metrics, retention, &source, inputs, Vec::new()).await?;
            Ok(IngestMetricsResponse { accepted: ingested.accepted as u64, dropped: ingested.dropped as u64 })
        })
        .await
    }

    async fn list_series(&self, request: Request<ListSeriesRequest>) -> Result<Response<ListSeriesResponse>, Status> {
        let call = Call::new(&request);
        let q = request.into_inner();
        call.answer(async {
            call.principal(&self.0).await?.require_role(Role::Viewer)?;
            let page = page(q.limit, q.offset)?;
            let (series, total) = samples::list_series(
                self.0.db.conn(),
                q.name.as_deref(),
                q.source_id.as_deref(),
                page.limit,
                page.offset,
            )
            .await?;
            Ok(ListSeriesResponse {
                metrics: series.into_iter().map(series_of).collect(),
                total,
                limit: page.limit,
                offset: page.offset,
            })
        })
        .await
    }

    async fn query_metrics(
        &self,
        request: Request<QueryMetricsRequest>,
    ) -> Result<Response<QueryMetricsResponse>, Status> {
        let call = Call::new(&request);
        let q = request.into_inner();
        call.answer(async {
            call.principal(&self.0).await?.require_role(Role::Viewer)?;
            let query = RangeQuery {
                metric: q.metric,
                labels: q.labels.into_iter().collect::<BTreeMap<_, _>>(),
                start_micros: time::parse_timestamp(&q.start),
                end_micros: time::parse_timestamp(&q.end),
                step_micros: time::parse_step(&q.step),
                aggregation: Aggregation::parse(non_empty(q.aggregation).as_deref()),
            };
            let result = samples::query(self.0.db.conn(), query).await?;
            Ok(QueryMetricsResponse {
                result: result
                    .into_iter()
                    .map(|series| SeriesPoints {
                        metric: series.metric.into_iter().collect(),
                        values: series
                            .values
                            .into_iter()
                            .map(|(timestamp, value)| Point { timestamp, value })
                            .collect(),
                    })
                    .collect(),
            })
        })
        .await
    }
}
