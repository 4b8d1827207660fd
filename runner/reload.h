/* reload.h - what a reload of runner.yaml may change while the instance runs, and the log
 * of what it did change. */
#ifndef RUNNER_RELOAD_H
#define RUNNER_RELOAD_H

#include "config.h"

/* reload_keep_restart_only copies into fresh the settings that only a restart changes
 * (database.url, worker.lease, worker.heartbeat, http.listen), logging each one that
 * fresh wanted to change. */
void reload_keep_restart_only(const config *running, config *fresh);

/* reload_log_changes logs one line for the reload: kinds added, removed and changed,
 * queues and concurrency, schedules. */
void reload_log_changes(const config *running, const config *fresh);

#endif
