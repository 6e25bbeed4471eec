//! moto's server: a real local CloudWatch API on 127.0.0.1, for the metrics agent's tests and
//! benchmark.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moto's server, stopped on drop.
pub struct Moto {
    pub port: u16,
    child: Option<Child>,
}

impl Moto {
    pub fn start(port: u16) -> Moto {
        let mut m = Moto { port, child: None };
        m.restart();
        m
    }

    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    pub fn restart(&mut self) {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every metric in `namespace` as ListMetrics gives it: its name and its `Name=value`
    /// dimensions sorted, the list sorted and without repeats.
    pub fn list_metrics(&self, namespace: &str) -> Vec<(String, Vec<String>)> {
        let (rt, client) = self.client();
        let listed = rt
            .block_on(client.list_metrics().namespace(namespace).send())
            .expect("ListMetrics");
        let mut seen: Vec<(String, Vec<String>)> = listed
            .metrics()
            .iter()
            .map(|m| {
                let mut d: Vec<String> = m
                    .dimensions()
                    .iter()
                    .map(|d| format!("{}={}", d.name().unwrap(), d.value().unwrap()))
                    .collect();
                d.sort();
                (m.metric_name().unwrap().to_owned(), d)
            })
            .collect();
        seen.sort();
        seen.dedup();
        seen
    }

    /// GetMetricStatistics of one series over the last ten minutes in one period: its
    /// (Average, Sum, SampleCount), `None` if it has no datum.
    pub fn statistics(
        &self,
        namespace: &str,
        name: &str,
        dimensions: &[(&str, &str)],
    ) -> Option<(f64, f64, f64)> {
        use aws_sdk_cloudwatch::primitives::DateTime;
        use aws_sdk_cloudwatch::types::{Dimension, Statistic};
        let (rt, client) = self.client();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let dims: Vec<Dimension> = dimensions
            .iter()
            .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
            .collect();
        let out = rt
            .block_on(
                client
                    .get_metric_statistics()
                    .namespace(namespace)
                    .metric_name(name)
                    .set_dimensions(Some(dims))
                    .start_time(DateTime::from_secs(now - 600))
                    .end_time(DateTime::from_secs(now + 60))
                    .period(3600)
                    .statistics(Statistic::Average)
                    .statistics(Statistic::Sum)
                    .statistics(Statistic::SampleCount)
                    .send(),
            )
            .expect("GetMetricStatistics");
        let points = out.datapoints();
        if points.is_empty() {
            return None;
        }
        let sum: f64 = points.iter().filter_map(|p| p.sum()).sum();
        let count: f64 = points.iter().filter_map(|p| p.sample_count()).sum();
        Some((sum / count, sum, count))
    }

    pub fn client(&self) -> (tokio::runtime::Runtime, aws_sdk_cloudwatch::Client) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = aws_sdk_cloudwatch::Config::builder()
            .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .endpoint_url(self.url())
            .build();
        (rt, aws_sdk_cloudwatch::Client::from_conf(config))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
