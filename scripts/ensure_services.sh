#!/usr/bin/env bash
# Starts the local PostgreSQL, Redis and RabbitMQ when they are installed but not answering.
# It never installs anything; when a service stays down, the tests fail and say so.
set -u
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
RABBITMQ_PORT=${RABBITMQ_PORT:-5672}

pg_up() { pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null \
          || (exec 3<>"/dev/tcp/$PGHOST/$PGPORT") 2>/dev/null; }
rabbitmq_up() { (exec 3<>"/dev/tcp/127.0.0.1/$RABBITMQ_PORT") 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "PostgreSQL is down: starting the local cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
  pg_up || echo "WARNING: PostgreSQL does not answer on $PGHOST:$PGPORT"
fi

if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "Redis is down: starting it"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no
    for _ in $(seq 1 30); do redis_up && break; sleep 0.5; done
  fi
  redis_up || echo "WARNING: Redis does not answer on 127.0.0.1:$REDIS_PORT"
fi
if ! rabbitmq_up; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "RabbitMQ is down: starting it"
    rabbitmq-server -detached || true
    # The node takes a few seconds to boot; its AMQP listener opens last.
    for _ in $(seq 1 90); do rabbitmq_up && break; sleep 1; done
  fi
  rabbitmq_up || echo "WARNING: RabbitMQ does not answer on 127.0.0.1:$RABBITMQ_PORT"
fi
exit 0
