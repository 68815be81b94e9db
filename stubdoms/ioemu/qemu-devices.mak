# QEMU's device set for the ioemu stub domain (i386-softmmu), on top of
# `--without-default-devices`: the xenfv machine and the devices libxl's xl.cfg options ask
# for, nothing else. The build installs this file as configs/devices/i386-softmmu/stubdoms.mak
# (`--with-devices-i386=stubdoms` in qemu-configure.args). Xen's own devices (xen-platform,
# the PV back ends) come with the Xen accelerator.

# The xenfv machine is i440fx/PIIX3 with its IDE controller, the ISA serial port, RTC, PIT,
# keyboard controller and floppy controller.
CONFIG_I440FX=y
# vga="cirrus" (libxl's default) and vga="stdvga".
CONFIG_VGA_CIRRUS=y
CONFIG_VGA_PCI=y
# NIC models: rtl8139 (libxl's default) and e1000.
CONFIG_RTL8139_PCI=y
CONFIG_E1000_PCI=y
# usb=1 and usbdevice="tablet": PIIX3's UHCI controller and the USB HID devices.
CONFIG_USB_UHCI=y
# hdtype="ahci".
CONFIG_AHCI_ICH9=y
