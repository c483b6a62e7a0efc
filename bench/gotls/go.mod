module tlsgate.bench/gotlsproxy

go 1.19
