/*  sgmq: the command line. Everything is in sgmq_cli. */
#include "sgmq_cli.h"

#include <czmq.h>

int
main (int argc, char *argv [])
{
    //  CZMQ's own SIGINT handling would make a Ctrl-C during `listen` wait
    //  for the next poll; the default action ends the process at once.
    zsys_handler_set (NULL);
    int rc = sgmq_cli_main (argc, argv);
    zsys_shutdown ();
    return rc;
}
