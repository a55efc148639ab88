"""The embedded TMS: UPS SCP (Push/Pull/Watch/Event), Object Storage (OST), scheduling and continuation.

Start it with :class:`simulators.dicom.tms.server.TmsServer`; drive it as a client with
:mod:`simulators.dicom.tms.client`.
"""
