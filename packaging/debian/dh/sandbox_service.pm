#!/usr/bin/perl
# dh sequence add-on of dh-sandbox-service: "dh $@ --with sandbox_service", or Build-Depends on
# dh-sequence-sandbox-service.  The sandbox snippets follow the service's own (dh_installsystemd).
use warnings;
use strict;
use Debian::Debhelper::Dh_Lib;

insert_after('dh_installsystemd', 'dh_sandbox_service');

1;
