/* cmicro: the umbrella header. */
#ifndef CMICRO_H
#define CMICRO_H

#include <cmicro/broker.h>
#include <cmicro/buf.h>
#include <cmicro/client.h>
#include <cmicro/codec.h>
#include <cmicro/error.h>
#include <cmicro/event.h>
#include <cmicro/log.h>
#include <cmicro/loop.h>
#include <cmicro/md.h>
#include <cmicro/registry.h>
#include <cmicro/rpc_error.h>
#include <cmicro/selector.h>
#include <cmicro/server.h>
#include <cmicro/service.h>
#include <cmicro/transport.h>
#include <cmicro/wrapper.h>

#endif
