#!/usr/bin/env bash
# Start PostgreSQL and RabbitMQ when they are down (commands of this machine kind), then wait.
set -u
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
mq_up() { (echo > /dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ! pg_up; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! mq_up; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached || true
fi
for _ in $(seq 1 90); do
  if pg_up && mq_up; then echo "services: PostgreSQL and RabbitMQ are up"; exit 0; fi
  sleep 1
done
echo "services: PostgreSQL up? $(pg_up && echo yes || echo no); RabbitMQ up? $(mq_up && echo yes || echo no)" >&2
exit 1
