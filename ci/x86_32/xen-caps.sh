#!/bin/sh
# Run in the test machine's dom0 beside the guest: the guest types this Xen offers.
timeout 20 xl info | grep '^xen_caps'
