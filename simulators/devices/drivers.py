"""Registers the bundled device drivers (imported by :func:`simulators.devices.base.driver_for`)."""

from simulators.devices.afterloader_driver import AFTERLOADER_DRIVER
from simulators.devices.base import register_driver
from simulators.devices.linac_driver import LINAC_DRIVER

register_driver(LINAC_DRIVER)
register_driver(AFTERLOADER_DRIVER)
