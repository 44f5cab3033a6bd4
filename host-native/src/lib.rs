//! Native host: durable AggregateStore on flocked JSONL files.
