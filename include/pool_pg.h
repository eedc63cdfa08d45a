/* pool_pg: the pool's connector over pgconn, so that the pool opens real
 * PostgreSQL connections while its unit tests use a fake (pool.h). */
#ifndef NEONFCGI_POOL_PG_H
#define NEONFCGI_POOL_PG_H

#include "pool_connector.h"

/* Its ctx is the struct pgconn_params * the connections are opened with; a
 * connection handle is a PGconn *. */
const struct pool_connector *pool_pg_connector(void);

#endif
